"""The reference package's OpenTelemetry API on our package: with the SDK
(its in-memory exporter checks spans, attributes, parentage and the
correlation attribute) and, in a subprocess that hides OpenTelemetry,
without it."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import PYTHON_ROOT, RecordingBackend, subprocess_env
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from snakepit_bridge import telemetry
from snakepit_bridge.telemetry import otel


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing set up afresh with an in-memory exporter."""
    saved, was_active = dict(otel._state), otel.active
    otel._state.update(done=False, tracer=None)
    exporter = InMemorySpanExporter()
    assert telemetry.setup_tracing(exporter=exporter) is True
    try:
        yield exporter
    finally:
        otel._state.update(saved)
        otel._set_active(was_active)


def test_setup_is_idempotent_and_the_tracer_is_there(spans: InMemorySpanExporter) -> None:
    tracer = telemetry.get_tracer()
    assert tracer is not None
    assert telemetry.setup_tracing() is True and telemetry.get_tracer() is tracer


def test_otel_span_takes_the_incoming_id_and_records_a_span(spans: InMemorySpanExporter) -> None:
    metadata = [("X-Snakepit-Correlation-Id", " cid-1 "), ("other", "x")]
    with telemetry.otel_span("op", context_metadata=metadata, attributes={"a": 1}) as span:
        assert span is not None and span.is_recording()
        assert telemetry.get_correlation_id() == "cid-1"
        with telemetry.otel_span("inner") as inner:
            assert telemetry.get_correlation_id() == "cid-1"  # the current one
            assert inner.get_span_context().trace_id == span.get_span_context().trace_id
    assert telemetry.get_correlation_id() is None
    inner_span, outer = spans.get_finished_spans()
    assert (outer.name, inner_span.name) == ("op", "inner")
    assert outer.attributes["a"] == 1
    assert outer.attributes["snakepit.correlation_id"] == "cid-1"
    assert inner_span.parent.span_id == outer.context.span_id
    assert outer.resource.attributes["service.namespace"] == "snakepit"
    assert outer.resource.attributes["service.name"] == "snakepit.python.bridge"


def test_otel_span_makes_a_new_id_when_there_is_none(spans: InMemorySpanExporter) -> None:
    with telemetry.otel_span("op") as span:
        new = telemetry.get_correlation_id()
        assert new and len(new) == 32
    assert spans.get_finished_spans()[0].attributes["snakepit.correlation_id"] == new
    assert span is not None


def test_log_records_carry_the_correlation_id(spans: InMemorySpanExporter) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("test_otel")
    handler = Keep()
    log.addHandler(handler)
    try:
        log.warning("outside")
        with telemetry.otel_span("op", context_metadata={"x-snakepit-correlation-id": "c9"}):
            log.warning("inside")
    finally:
        log.removeHandler(handler)
    assert [r.correlation_id for r in records] == ["-", "c9"]


_WITHOUT_SDK = """
import sys
sys.modules["opentelemetry"] = None  # import fails as if not installed
from snakepit_bridge import telemetry
assert telemetry.setup_tracing() is False
assert telemetry.setup_tracing() is False and telemetry.get_tracer() is None
with telemetry.otel_span("op", context_metadata=[("x-snakepit-correlation-id", "c1")]) as s:
    assert s is None and telemetry.get_correlation_id() == "c1"
assert telemetry.get_correlation_id() is None
print("ok")
"""


def test_without_the_sdk_it_still_works() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDK],
        cwd=PYTHON_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_our_span_is_an_otel_span_too(spans: InMemorySpanExporter) -> None:
    with (
        telemetry.span("tool.execution", {"tool": "predict"}, correlation_id="c5"),
        telemetry.otel_span("inner"),
    ):
        pass
    with pytest.raises(ValueError), telemetry.span("tool.execution", {"tool": "bad"}):
        raise ValueError("boom")
    inner, ok, failed = spans.get_finished_spans()
    assert ok.name == "tool.execution" and ok.attributes["tool"] == "predict"
    assert ok.attributes["snakepit.correlation_id"] == "c5"
    assert inner.parent.span_id == ok.context.span_id
    assert inner.attributes["snakepit.correlation_id"] == "c5"
    assert failed.status.status_code.name == "ERROR"
    assert failed.events[0].name == "exception"


def test_a_callers_traceparent_is_the_parent_of_the_calls_spans(
    spans: InMemorySpanExporter,
) -> None:
    from bridge_harness import request, run, serving

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    tp = f"00-{trace_id}-{parent}-01"

    async def main() -> None:
        async with serving() as h:
            # In the request metadata here; the gRPC header works the same.
            await h.stub.ExecuteTool(request("ping", metadata={"traceparent": tp}))
            await h.stub.ExecuteTool(request("ping"), metadata=(("traceparent", tp),))
            await h.stub.ExecuteTool(request("ping"))

    run(main())
    by_name: dict[str, list] = {}
    for s in spans.get_finished_spans():
        by_name.setdefault(s.name, []).append(s)
    calls = by_name["python.call"]
    assert [format(c.context.trace_id, "032x") for c in calls[:2]] == [trace_id, trace_id]
    assert [format(c.parent.span_id, "016x") for c in calls[:2]] == [parent, parent]
    assert calls[2].parent is None  # no traceparent: a trace of its own
    tool = by_name["tool.execution"][0]
    assert tool.parent.span_id == calls[0].context.span_id


def test_events_inside_a_span_carry_its_trace_and_span_ids(
    spans: InMemorySpanExporter, recorder: RecordingBackend
) -> None:
    telemetry.emit("tool.result_size", {"bytes": 1})
    with telemetry.span("tool.execution", {"tool": "t"}):
        telemetry.emit("tool.result_size", {"bytes": 2})
    outside, start, inside, stop = recorder.events
    (finished,) = spans.get_finished_spans()
    ids = {
        "trace_id": format(finished.context.trace_id, "032x"),
        "span_id": format(finished.context.span_id, "016x"),
    }
    assert "trace_id" not in outside.metadata
    for event in (start, inside, stop):
        assert {k: event.metadata[k] for k in ids} == ids, event.name
