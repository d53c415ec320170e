"""StderrBackend: the TELEMETRY:{json} line format, robustness and thread safety."""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import time

import pytest

from snakepit_bridge import telemetry
from snakepit_bridge.telemetry.backends.stderr import PREFIX, StderrBackend

KEYS = ["event", "measurements", "metadata", "timestamp_ns", "correlation_id"]


def parse(line: str) -> dict:
    assert line.startswith(PREFIX), line
    return json.loads(line[len(PREFIX) :])


def lines_of(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert text == "" or text.endswith("\n")
    return text.splitlines()


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


class SlowChunkedStream:
    """Writes each string in two halves with a thread switch in between, so lines
    from different threads would interleave if the backend did not serialise."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        half = len(text) // 2
        self.parts.append(text[:half])
        time.sleep(0)
        self.parts.append(text[half:])
        return len(text)

    def flush(self) -> None:
        time.sleep(0)


class FailingStream:
    def __init__(self, exc: BaseException, on: str) -> None:
        self.exc, self.on = exc, on

    def write(self, text: str) -> int:
        if self.on == "write":
            raise self.exc
        return len(text)

    def flush(self) -> None:
        if self.on == "flush":
            raise self.exc


def test_one_line_per_event_with_the_documented_shape() -> None:
    stream = io.StringIO()
    backend = StderrBackend(stream)
    before = time.time_ns()
    backend.emit("tool.execution.stop", {"duration": 1500, "ratio": 0.5}, {"tool": "p"}, "req-1")
    backend.emit("python.call.start", {}, {}, None)
    after = time.time_ns()

    first, second = lines_of(stream)
    payload = parse(first)
    assert list(payload) == KEYS
    assert payload["event"] == "tool.execution.stop"
    assert payload["measurements"] == {"duration": 1500, "ratio": 0.5}
    assert payload["metadata"] == {"tool": "p"}
    assert payload["correlation_id"] == "req-1"
    assert isinstance(payload["timestamp_ns"], int)
    assert before <= payload["timestamp_ns"] <= after
    assert parse(second)["correlation_id"] is None
    assert parse(second)["measurements"] == {} and parse(second)["metadata"] == {}


def test_json_is_compact() -> None:
    stream = io.StringIO()
    StderrBackend(stream).emit("python.call.start", {"a": 1}, {"b": "c d"}, "x")
    (line,) = lines_of(stream)
    body = line[len(PREFIX) :]
    assert body == json.dumps(json.loads(body), separators=(",", ":"))


def test_newlines_and_non_ascii_never_break_the_line() -> None:
    stream = io.StringIO()
    message = "line one\nline two\r\n\u2028tab\there é 🐍"
    StderrBackend(stream).emit("python.call.exception", {}, {"error_message": message}, None)
    (line,) = lines_of(stream)
    assert line.isascii()
    assert parse(line)["metadata"]["error_message"] == message


def test_non_finite_numbers_are_not_written() -> None:
    stream = io.StringIO()
    backend = StderrBackend(stream)
    backend.emit("python.call.stop", {"duration": float("nan")}, {}, None)
    backend.emit("python.call.stop", {"duration": object()}, {}, None)  # type: ignore[dict-item]
    assert stream.getvalue() == ""
    assert backend.stats() == {"written": 0, "encode_errors": 2, "write_errors": 0}


def test_each_event_is_flushed() -> None:
    stream = CountingStream()
    backend = StderrBackend(stream)
    for _ in range(3):
        backend.emit("python.call.start", {}, {}, None)
    assert stream.flushes == 3 and len(lines_of(stream)) == 3


def test_default_stream_is_sys_stderr_at_emit_time(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = StderrBackend()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    backend.emit("python.call.start", {}, {}, None)
    monkeypatch.setattr(sys, "stderr", second)
    backend.emit("python.call.stop", {"duration": 1}, {}, None)
    assert [parse(x)["event"] for x in lines_of(first)] == ["python.call.start"]
    assert [parse(x)["event"] for x in lines_of(second)] == ["python.call.stop"]


def test_capsys_sees_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.set_backend(StderrBackend())
    telemetry.emit("tool.result_size", {"bytes": "10"}, {"tool": "t"}, "c")
    captured = capsys.readouterr()
    assert captured.out == ""
    payload = parse(captured.err.rstrip("\n"))
    assert payload["measurements"] == {"bytes": 10} and payload["correlation_id"] == "c"


@pytest.mark.parametrize(
    "stream",
    [
        FailingStream(BrokenPipeError(), "write"),
        FailingStream(OSError("disk full"), "flush"),
        FailingStream(ValueError("I/O operation on closed file"), "write"),
    ],
)
def test_write_errors_are_swallowed_and_counted(stream: FailingStream) -> None:
    backend = StderrBackend(stream)  # type: ignore[arg-type]
    backend.emit("python.call.start", {}, {}, None)
    backend.emit("python.call.start", {}, {}, None)
    assert backend.stats() == {"written": 0, "encode_errors": 0, "write_errors": 2}


def test_a_closed_stream_is_a_write_error() -> None:
    stream = io.StringIO()
    stream.close()
    backend = StderrBackend(stream)
    backend.emit("python.call.start", {}, {}, None)
    assert backend.stats()["write_errors"] == 1


def test_missing_sys_stderr_is_a_write_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    backend = StderrBackend()
    backend.emit("python.call.start", {}, {}, None)
    assert backend.stats()["write_errors"] == 1


def test_close_is_harmless_and_idempotent() -> None:
    stream = io.StringIO()
    backend = StderrBackend(stream)
    backend.close()
    backend.close()
    backend.emit("python.call.start", {}, {}, None)
    assert len(lines_of(stream)) == 1 and not stream.closed


def test_many_threads_never_interleave_lines() -> None:
    stream = SlowChunkedStream()
    backend = StderrBackend(stream)  # type: ignore[arg-type]
    telemetry.set_backend(backend)
    threads_n, per_thread = 8, 200
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        start.wait(timeout=10)
        for i in range(per_thread):
            telemetry.emit("tool.result_size", {"bytes": i}, {"tool": f"t{t}"}, f"c{t}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    text = "".join(stream.parts)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == threads_n * per_thread
    seen: dict[str, list[int]] = {}
    for line in lines:
        payload = parse(line)
        assert payload["correlation_id"] == "c" + payload["metadata"]["tool"][1:]
        seen.setdefault(payload["metadata"]["tool"], []).append(payload["measurements"]["bytes"])
    # every thread's events arrive complete and in that thread's order
    assert seen == {f"t{t}": list(range(per_thread)) for t in range(threads_n)}
    assert backend.stats() == {
        "written": threads_n * per_thread,
        "encode_errors": 0,
        "write_errors": 0,
    }


def test_the_fast_line_is_byte_for_byte_what_json_writes() -> None:
    import json
    import random

    from snakepit_bridge.telemetry.backends import stderr

    rng = random.Random(1234)
    texts = [
        "",
        "a",
        "tool.execution",
        'q"uote',
        "back\\slash",
        "new\nline",
        "é→𝄞",
        "\x00\x1f",
        "\ud800",
    ]
    numbers = [0, -1, 2**70, -(2**63), 1.5, -0.0, 1e300, 5e-324, 1e16, 0.1 + 0.2]
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    for _ in range(3000):
        name = rng.choice(texts) + rng.choice(texts)
        measurements = {rng.choice(texts): rng.choice(numbers) for _ in range(rng.randrange(4))}
        metadata = {rng.choice(texts): rng.choice(texts) for _ in range(rng.randrange(4))}
        cid = rng.choice([None, *texts])
        ts = rng.randrange(2**63)
        fast = stderr._fast_line(name, measurements, metadata, ts, cid)
        payload = {
            "event": name,
            "measurements": measurements,
            "metadata": metadata,
            "timestamp_ns": ts,
            "correlation_id": cid,
        }
        assert fast == stderr.PREFIX + encode(payload) + "\n"
    # Anything else takes the json path (or is refused there).
    assert stderr._fast_line("a", {"x": True}, {}, 1, None) is None
    assert stderr._fast_line("a", {"x": math.nan}, {}, 1, None) is None
    assert stderr._fast_line("a", {}, {"k": 1}, 1, None) is None
    assert stderr._fast_line("a", {1: 1}, {}, 1, None) is None
