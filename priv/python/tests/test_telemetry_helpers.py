"""The public helpers: emit, span, backend switching, correlation, coercion, no-raise."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import subprocess
import threading
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conftest import PYTHON_ROOT, Recorded, RecordingBackend, subprocess_env

from snakepit_bridge import catalog, telemetry
from snakepit_bridge.telemetry import coerce, manager
from snakepit_bridge.telemetry.backends.stderr import StderrBackend
from snakepit_bridge.telemetry.span import MAX_ERROR_MESSAGE_BYTES


def counters_delta(before: dict[str, int]) -> dict[str, int]:
    after = telemetry.stats()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


class Raising(telemetry.TelemetryBackend):
    def emit(self, event_name, measurements, metadata, correlation_id):  # type: ignore[override]
        raise RuntimeError("backend is broken")


class Color(enum.IntEnum):
    RED = 7


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


# --- emit ------------------------------------------------------------------


def test_emit_passes_the_event_through(recorder: RecordingBackend) -> None:
    assert telemetry.emit("tool.result_size", {"bytes": 10}, {"tool": "t"}, "req-1") is None
    assert recorder.events == [Recorded("tool.result_size", {"bytes": 10}, {"tool": "t"}, "req-1")]


def test_emit_defaults(recorder: RecordingBackend) -> None:
    telemetry.emit("python.call.start", {"system_time": 1})
    event = recorder.one("python.call.start")
    assert event.metadata == {} and event.correlation_id is None


def test_emit_does_not_validate_names(recorder: RecordingBackend) -> None:
    telemetry.emit("python.bogus.event", {"count": 1})
    assert recorder.names() == ["python.bogus.event"]


def test_emit_without_backend_is_a_no_op() -> None:
    telemetry.set_backend(None)
    assert not telemetry.is_enabled()
    before = telemetry.stats()
    assert telemetry.emit("tool.result_size", {"bytes": object()}, {"x": Unprintable()}) is None
    assert counters_delta(before) == {}  # nothing was even looked at


def test_emit_never_raises_when_the_backend_does() -> None:
    telemetry.set_backend(Raising())
    before = telemetry.stats()
    telemetry.emit("tool.result_size", {"bytes": 1})
    with telemetry.span("tool.execution"):
        pass
    assert counters_delta(before) == {"backend_errors": 3}


@pytest.mark.parametrize(
    ("measurements", "metadata"),
    [
        (None, None),
        ([1, 2], "not a mapping"),
        (42, 3.5),
        ({"a": Unprintable()}, {"b": Unprintable()}),
        ({Unprintable(): "1"}, {Unprintable(): 1}),
    ],
)
def test_emit_never_raises_on_bad_arguments(
    recorder: RecordingBackend, measurements: Any, metadata: Any
) -> None:
    telemetry.emit("tool.result_size", measurements, metadata)
    assert recorder.one("tool.result_size").measurements == {}
    assert recorder.one("tool.result_size").metadata == {}


def test_emit_survives_a_mapping_whose_items_raise(recorder: RecordingBackend) -> None:
    class Broken(dict):
        def items(self):  # type: ignore[override]
            raise RuntimeError("nope")

    before = telemetry.stats()
    telemetry.emit("tool.result_size", Broken(a=1), Broken(b="x"))
    assert recorder.one("tool.result_size").measurements == {}
    assert counters_delta(before) == {"dropped_measurements": 1, "dropped_metadata": 1}


# --- coercion --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (-2.5, -2.5),
        (0.0, 0.0),
        (True, 1),
        (False, 0),
        (Color.RED, 7),
        (Fraction(1, 4), 0.25),
        ("12", 12),
        (" 12\n", 12),
        ("-7", -7),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (2**70, 2**70),
    ],
)
def test_measurement_values_that_are_kept(value: Any, expected: int | float) -> None:
    result = coerce.coerce_measurements({"m": value})
    assert result == {"m": expected}
    assert type(result["m"]) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "abc",
        "",
        "12abc",
        "nan",
        "inf",
        float("nan"),
        float("inf"),
        float("-inf"),
        [1],
        {"a": 1},
        b"12",
        object(),
        Decimal("1.5"),
        1 + 2j,
    ],
)
def test_measurement_values_that_are_dropped_and_counted(value: Any) -> None:
    before = telemetry.stats()
    assert coerce.coerce_measurements({"keep": 1, "m": value}) == {"keep": 1}
    assert counters_delta(before) == {"dropped_measurements": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x", "x"),
        ("", ""),
        (3, "3"),
        (1.5, "1.5"),
        (True, "true"),
        (Color.RED, str(Color.RED)),
        (["a", 1], "['a', 1]"),
    ],
)
def test_metadata_values_become_strings(value: Any, expected: str) -> None:
    assert coerce.coerce_metadata({"k": value}) == {"k": expected}


def test_metadata_none_values_are_dropped_silently() -> None:
    before = telemetry.stats()
    assert coerce.coerce_metadata({"a": None, "b": "x", "c": 1}) == {"b": "x", "c": "1"}
    assert counters_delta(before) == {}


def test_unprintable_metadata_is_dropped_and_counted() -> None:
    before = telemetry.stats()
    assert coerce.coerce_metadata({"a": Unprintable(), "b": "x"}) == {"b": "x"}
    assert counters_delta(before) == {"dropped_metadata": 1}


def test_keys_become_strings_when_coercing() -> None:
    assert coerce.coerce_measurements({1: "2", "b": 3}) == {"1": 2, "b": 3}
    assert coerce.coerce_metadata({1: 2, "b": "c"}) == {"1": "2", "b": "c"}


def test_fast_path_returns_the_callers_dict_unchanged() -> None:
    measurements = {"a": 1, "b": 2.5}
    metadata = {"tool": "t"}
    assert coerce.coerce_measurements(measurements) is measurements
    assert coerce.coerce_metadata(metadata) is metadata
    assert coerce.coerce_metadata(None) == {}
    assert coerce.coerce_measurements(None) == {}


def test_slow_path_never_mutates_the_callers_dict() -> None:
    measurements = {"a": "1", "b": None}
    metadata = {"a": 1, "b": None}
    coerce.coerce_measurements(measurements)
    coerce.coerce_metadata(metadata)
    assert measurements == {"a": "1", "b": None} and metadata == {"a": 1, "b": None}


def test_emit_applies_coercion(recorder: RecordingBackend) -> None:
    telemetry.emit(
        "tool.result_size",
        {"bytes": "2048", "flag": True, "bad": "x", "nan": float("nan")},
        {"tool": "t", "attempt": 2, "none": None},
    )
    event = recorder.one("tool.result_size")
    assert event.measurements == {"bytes": 2048, "flag": 1}
    assert event.metadata == {"tool": "t", "attempt": "2"}


def test_stats_lists_every_counter() -> None:
    stats = telemetry.stats()
    assert set(stats) == {"dropped_measurements", "dropped_metadata", "backend_errors"}
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())


# --- backend switching -------------------------------------------------------


def test_set_backend_returns_the_previous_one_without_closing_it() -> None:
    first, second = RecordingBackend(), RecordingBackend()
    telemetry.set_backend(first)
    assert telemetry.get_backend() is first and telemetry.is_enabled()
    assert telemetry.set_backend(second) is first
    assert first.closed == 0
    telemetry.emit("python.call.start", {})
    assert first.events == [] and second.names() == ["python.call.start"]
    assert telemetry.set_backend(None) is second
    assert telemetry.get_backend() is None and not telemetry.is_enabled()


@pytest.mark.parametrize("bad", [object(), "stderr", print])
def test_set_backend_rejects_non_backends(bad: Any) -> None:
    before = telemetry.get_backend()
    with pytest.raises(TypeError):
        telemetry.set_backend(bad)
    assert telemetry.get_backend() is before


@pytest.mark.parametrize("value", ["stderr", "STDERR", " stderr\n"])
def test_env_value_stderr_selects_the_stderr_backend(value: str) -> None:
    assert isinstance(manager.backend_from_env(value), StderrBackend)


@pytest.mark.parametrize("value", [None, "", "off", "OFF", " off "])
def test_env_value_off_or_unset_means_no_backend(
    value: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert manager.backend_from_env(value) is None
    assert caplog.records == []


def test_unknown_env_value_warns_and_means_no_backend(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert manager.backend_from_env("kafka") is None
    assert "PYTHON_SNAKEPIT_TELEMETRY" in caplog.text and "kafka" in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("stderr", "StderrBackend"), ("off", "None"), (None, "None")],
)
def test_backend_is_chosen_at_import(python: str, value: str | None, expected: str) -> None:
    code = (
        "from snakepit_bridge import telemetry; b = telemetry.get_backend(); "
        "print(type(b).__name__ if b else None, telemetry.is_enabled())"
    )
    result = subprocess.run(
        [python, "-c", code],
        cwd=PYTHON_ROOT,
        env=subprocess_env(PYTHON_SNAKEPIT_TELEMETRY=value),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected, str(expected != "None")]
    assert result.stderr == ""


def test_importing_the_package_selects_no_backend(python: str) -> None:
    """`import snakepit_bridge` alone must not import telemetry (or the catalog)."""
    code = "import sys, snakepit_bridge; print(sorted(m for m in sys.modules if 'snakepit' in m))"
    result = subprocess.run(
        [python, "-c", code],
        cwd=PYTHON_ROOT,
        env=subprocess_env(PYTHON_SNAKEPIT_TELEMETRY="stderr"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['snakepit_bridge']", result.stderr


# --- correlation -------------------------------------------------------------


def test_explicit_correlation_id_wins(recorder: RecordingBackend) -> None:
    with telemetry.use_correlation_id("ctx"):
        telemetry.emit("python.call.start", {}, None, "explicit")
    assert recorder.one("python.call.start").correlation_id == "explicit"


def test_correlation_id_comes_from_the_context(recorder: RecordingBackend) -> None:
    assert telemetry.current_correlation_id() is None
    with telemetry.use_correlation_id("ctx-1"):
        assert telemetry.current_correlation_id() == "ctx-1"
        telemetry.emit("python.call.start", {})
    assert telemetry.current_correlation_id() is None
    assert recorder.one("python.call.start").correlation_id == "ctx-1"


def test_non_string_correlation_ids_become_strings(recorder: RecordingBackend) -> None:
    telemetry.emit("python.call.start", {}, None, 1234)  # type: ignore[arg-type]
    with telemetry.span("tool.execution", None, 99):  # type: ignore[arg-type]
        assert telemetry.current_correlation_id() == "99"
    assert [e.correlation_id for e in recorder.events] == ["1234", "99", "99"]


def test_span_with_an_id_makes_it_current_for_nested_calls(recorder: RecordingBackend) -> None:
    with telemetry.span("python.call", correlation_id="req-7") as outer:
        assert outer.correlation_id == "req-7"
        assert telemetry.current_correlation_id() == "req-7"
        with telemetry.span("tool.execution", {"tool": "t"}) as inner:
            assert inner.correlation_id == "req-7"
            telemetry.emit("tool.result_size", {"bytes": 1})
    assert telemetry.current_correlation_id() is None
    assert {e.correlation_id for e in recorder.events} == {"req-7"}
    assert len(recorder.events) == 5


def test_span_without_an_id_uses_the_current_one(recorder: RecordingBackend) -> None:
    with telemetry.use_correlation_id("ctx-2"), telemetry.span("tool.execution"):
        pass
    assert [e.correlation_id for e in recorder.events] == ["ctx-2", "ctx-2"]


def test_span_restores_the_outer_id_after_an_exception() -> None:
    with telemetry.use_correlation_id("outer"):
        with pytest.raises(KeyError), telemetry.span("tool.execution", correlation_id="inner"):
            raise KeyError("k")
        assert telemetry.current_correlation_id() == "outer"


def test_correlation_ids_are_per_thread(recorder: RecordingBackend) -> None:
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with telemetry.span("tool.execution", correlation_id=f"t-{i}"):
            barrier.wait(timeout=10)  # all four spans are open at once
            telemetry.emit("tool.result_size", {"bytes": i})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sizes = [e for e in recorder.events if e.event == "tool.result_size"]
    assert sorted((e.measurements["bytes"], e.correlation_id) for e in sizes) == [
        (i, f"t-{i}") for i in range(4)
    ]


def test_correlation_ids_are_per_asyncio_task(recorder: RecordingBackend) -> None:
    async def handle(i: int) -> str | None:
        async with telemetry.span("python.call", correlation_id=f"a-{i}"):
            await asyncio.sleep(0.01)
            telemetry.emit("tool.result_size", {"bytes": i})
            return telemetry.current_correlation_id()

    async def main() -> list[str | None]:
        return await asyncio.gather(*(handle(i) for i in range(3)))

    assert asyncio.run(main()) == ["a-0", "a-1", "a-2"]
    sizes = [e for e in recorder.events if e.event == "tool.result_size"]
    assert {(e.measurements["bytes"], e.correlation_id) for e in sizes} == {
        (i, f"a-{i}") for i in range(3)
    }


# --- span ----------------------------------------------------------------------


def test_span_emits_start_and_stop(recorder: RecordingBackend) -> None:
    before_ns = time.time_ns()
    with telemetry.span("tool.execution", {"tool": "predict", "n": 2}, "req-1"):
        time.sleep(0.01)
    after_ns = time.time_ns()

    assert recorder.names() == ["tool.execution.start", "tool.execution.stop"]
    start, stop = recorder.events
    assert set(start.measurements) == {"system_time"}
    assert before_ns <= start.measurements["system_time"] <= after_ns
    assert set(stop.measurements) == {"duration"}
    assert isinstance(stop.measurements["duration"], int)
    assert 10_000_000 <= stop.measurements["duration"] <= after_ns - before_ns
    assert start.metadata == stop.metadata == {"tool": "predict", "n": "2"}
    assert start.correlation_id == stop.correlation_id == "req-1"


def test_span_event_names_are_catalog_names(recorder: RecordingBackend) -> None:
    for operation in ("python.call", "tool.execution"):
        with telemetry.span(operation):
            pass
        with pytest.raises(ValueError), telemetry.span(operation):
            raise ValueError
    assert set(recorder.names()) <= catalog.python_events()


def test_span_exception_event_and_reraise(recorder: RecordingBackend) -> None:
    error = ValueError("bad input\nsecond line")
    with pytest.raises(ValueError) as caught, telemetry.span("python.call", {"tool": "t"}):
        raise error
    assert caught.value is error
    assert caught.traceback[-1].name == "test_span_exception_event_and_reraise"

    assert recorder.names() == ["python.call.start", "python.call.exception"]
    exception = recorder.events[1]
    assert set(exception.measurements) == {"duration"}
    assert exception.metadata == {
        "tool": "t",
        "error_type": "ValueError",
        "error_message": "bad input\nsecond line",
    }


def test_span_reports_base_exceptions_too(recorder: RecordingBackend) -> None:
    with pytest.raises(KeyboardInterrupt), telemetry.span("python.call"):
        raise KeyboardInterrupt
    assert recorder.events[-1].event == "python.call.exception"
    assert recorder.events[-1].metadata["error_type"] == "KeyboardInterrupt"


def test_span_error_message_is_bounded_in_utf8_bytes(recorder: RecordingBackend) -> None:
    assert catalog.limits()["max_metadata_value_bytes"] == MAX_ERROR_MESSAGE_BYTES
    # 1 + 2 bytes per "é": the cut at the limit (an even number) falls inside a character.
    message = "a" + "é" * MAX_ERROR_MESSAGE_BYTES
    with pytest.raises(RuntimeError), telemetry.span("python.call"):
        raise RuntimeError(message)
    sent = recorder.events[-1].metadata["error_message"]
    assert len(sent.encode("utf-8")) == MAX_ERROR_MESSAGE_BYTES - 1
    assert sent == "a" + "é" * (MAX_ERROR_MESSAGE_BYTES // 2 - 1)


def test_short_error_messages_are_sent_whole(recorder: RecordingBackend) -> None:
    message = "é" * (MAX_ERROR_MESSAGE_BYTES // 2)  # exactly at the limit
    with pytest.raises(RuntimeError), telemetry.span("python.call"):
        raise RuntimeError(message)
    assert recorder.events[-1].metadata["error_message"] == message


def test_span_error_message_is_valid_for_json_receivers(recorder: RecordingBackend) -> None:
    with pytest.raises(OSError), telemetry.span("python.call"):
        raise OSError("bad file \udcff")  # lone surrogate, as from os.fsdecode
    json.loads(json.dumps(recorder.events[-1].metadata["error_message"]).encode("utf-8"))
    assert recorder.events[-1].metadata["error_message"] == "bad file ?"


def test_span_with_an_unprintable_exception(recorder: RecordingBackend) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("nope")

    with pytest.raises(Weird), telemetry.span("python.call"):
        raise Weird()
    assert recorder.events[-1].metadata["error_message"] == "<unprintable Weird>"


def test_span_extras_go_to_the_stop_event(recorder: RecordingBackend) -> None:
    with telemetry.span("python.call", {"tool": "t"}) as s:
        s.set_measurement("response_size", "512")
        s.set_measurement("duration", -1)  # the span's own duration wins
        s.set_measurement("bad", object())
        s.set_metadata("result", "ok")
        s.set_metadata("attempt", 2)
    start, stop = recorder.events
    assert start.metadata == {"tool": "t"}
    assert stop.measurements["response_size"] == 512
    assert stop.measurements["duration"] >= 0 and "bad" not in stop.measurements
    assert stop.metadata == {"tool": "t", "result": "ok", "attempt": "2"}


def test_span_extras_go_to_the_exception_event(recorder: RecordingBackend) -> None:
    with pytest.raises(ZeroDivisionError), telemetry.span("python.call") as s:
        s.set_measurement("count", 3)
        s.set_metadata("error_type", "overridden?")
        1 / 0  # noqa: B018
    exception = recorder.events[-1]
    assert exception.measurements["count"] == 3
    assert exception.metadata["error_type"] == "ZeroDivisionError"


def test_span_works_without_a_backend() -> None:
    telemetry.set_backend(None)
    with telemetry.span("tool.execution") as s:
        s.set_measurement("count", 1)
        result = 42
    assert result == 42


def test_span_is_unaffected_by_a_failing_backend() -> None:
    telemetry.set_backend(Raising())
    with telemetry.span("tool.execution"):
        value = "ran"
    assert value == "ran"
    with pytest.raises(LookupError), telemetry.span("tool.execution"):
        raise LookupError("the block's own error still propagates")


def test_span_cannot_be_entered_twice(recorder: RecordingBackend) -> None:
    s = telemetry.span("python.call")
    with s:
        pass
    with pytest.raises(RuntimeError, match="once"), s:
        pass


def test_span_as_async_context_manager(recorder: RecordingBackend) -> None:
    async def main() -> None:
        async with telemetry.span("tool.execution", {"tool": "a"}, "req-a") as s:
            await asyncio.sleep(0)
            s.set_measurement("count", 1)
        with pytest.raises(asyncio.TimeoutError):
            async with telemetry.span("tool.execution", {"tool": "b"}):
                await asyncio.wait_for(asyncio.sleep(1), timeout=0.001)

    asyncio.run(main())
    assert recorder.names() == [
        "tool.execution.start",
        "tool.execution.stop",
        "tool.execution.start",
        "tool.execution.exception",
    ]
    assert recorder.events[1].measurements["count"] == 1
    assert recorder.events[3].metadata["error_type"] == "TimeoutError"


def test_span_exposes_its_operation() -> None:
    assert telemetry.span("tool.execution").operation == "tool.execution"


def test_span_start_measurements_go_into_the_start_event_only(
    recorder: RecordingBackend,
) -> None:
    with telemetry.span(
        "python.call", {"tool": "t"}, start_measurements={"request_size": 5, "system_time": -1}
    ):
        pass
    start, stop = recorder.events
    assert start.measurements["request_size"] == 5
    assert start.measurements["system_time"] > 0  # cannot be overridden
    assert "request_size" not in stop.measurements
