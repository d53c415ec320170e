"""The reference Snakepit package's correlation helpers on our package
(issue 13): same names, same behaviour, one context variable shared with our
own ``current_correlation_id``, ``span`` and ``emit``."""

from __future__ import annotations

import asyncio
import logging

from conftest import RecordingBackend

from snakepit_bridge import telemetry


def test_the_header_and_new_ids() -> None:
    assert telemetry.CORRELATION_HEADER == "x-snakepit-correlation-id"
    a, b = telemetry.new_correlation_id(), telemetry.new_correlation_id()
    assert a != b and len(a) == 32 and int(a, 16) >= 0


def test_set_get_reset_share_our_context() -> None:
    assert telemetry.get_correlation_id() is None
    assert telemetry.get_correlation_id("fallback") == "fallback"
    token = telemetry.set_correlation_id("req-1")
    try:
        assert telemetry.get_correlation_id() == "req-1"
        assert telemetry.current_correlation_id() == "req-1"
    finally:
        telemetry.reset_correlation_id(token)
    assert telemetry.get_correlation_id() is None
    telemetry.reset_correlation_id(None)  # a no-op, as in the reference


def test_emit_and_span_use_the_id_set_by_the_reference_helpers(
    recorder: RecordingBackend,
) -> None:
    token = telemetry.set_correlation_id("req-2")
    try:
        telemetry.emit("tool.result_size", {"bytes": 1})
        with telemetry.span("tool.execution", {"tool": "t"}):
            pass
    finally:
        telemetry.reset_correlation_id(token)
    assert {e.correlation_id for e in recorder.events} == {"req-2"}


def test_outgoing_metadata_appends_the_current_id() -> None:
    assert telemetry.outgoing_metadata() == []
    assert telemetry.outgoing_metadata([("k", "v")]) == [("k", "v")]
    with telemetry.use_correlation_id("req-3"):
        assert telemetry.outgoing_metadata([("k", "v")]) == [
            ("k", "v"),
            (telemetry.CORRELATION_HEADER, "req-3"),
        ]


def test_correlation_filter_sets_the_record_attribute() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("test.correlation_filter")
    handler = Keep()
    handler.addFilter(telemetry.correlation_filter())
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("outside")
        with telemetry.use_correlation_id("req-4"):
            log.warning("inside")
    finally:
        log.removeHandler(handler)
    assert [r.correlation_id for r in records] == ["-", "req-4"]


def test_each_task_sees_its_own_id() -> None:
    async def worker(cid: str) -> str | None:
        token = telemetry.set_correlation_id(cid)
        await asyncio.sleep(0.01)
        try:
            return telemetry.get_correlation_id()
        finally:
            telemetry.reset_correlation_id(token)

    async def main() -> list[str | None]:
        return list(await asyncio.gather(worker("a"), worker("b")))

    assert asyncio.run(main()) == ["a", "b"]


def test_telemetry_stream_has_the_reference_attributes() -> None:
    from snakepit_bridge.telemetry.stream import TelemetryStream

    stream = TelemetryStream(max_buffer=2)
    assert stream.enabled is True and stream.sampling_rate == 1.0 and stream.dropped_count == 0
    for _ in range(3):
        stream.emit("a.b", {}, {}, None)
    assert stream.dropped_count == 1  # the buffer holds two
    stream.toggle(False)
    stream.update_sampling(0.25)
    assert stream.enabled is False and stream.sampling_rate == 0.25
    stream.close()
    assert stream.closed
