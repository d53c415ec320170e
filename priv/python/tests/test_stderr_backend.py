"""StderrBackend: the TELEMETRY:{json} line format, robustness and thread safety."""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import threading
import time
from typing import Any

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


def random_payload(rng: Any, texts: list[str], numbers: list[Any]) -> dict[str, Any]:
    """An event as the line's JSON object (keys in the line's order)."""
    return {
        "event": rng.choice(texts) + rng.choice(texts),
        "measurements": {rng.choice(texts): rng.choice(numbers) for _ in range(rng.randrange(4))},
        "metadata": {rng.choice(texts): rng.choice(texts) for _ in range(rng.randrange(4))},
        "timestamp_ns": rng.randrange(2**63),
        "correlation_id": rng.choice([None, *texts]),
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
        payload = random_payload(rng, texts, numbers)
        name, measurements, metadata, ts, cid = payload.values()
        fast = stderr._fast_line(name, measurements, metadata, ts, cid)
        assert fast == stderr.PREFIX + encode(payload) + "\n"
    # Anything else takes the json path (or is refused there).
    assert stderr._fast_line("a", {"x": True}, {}, 1, None) is None
    assert stderr._fast_line("a", {"x": math.nan}, {}, 1, None) is None
    assert stderr._fast_line("a", {}, {"k": 1}, 1, None) is None
    assert stderr._fast_line("a", {1: 1}, {}, 1, None) is None


def test_the_orjson_line_is_the_same_json_value_or_left_to_the_other_paths() -> None:
    import random

    from snakepit_bridge.telemetry.backends import stderr

    rng = random.Random(4321)
    plain = ["", "a", "tool.execution", 'q"uote', "back\\slash", "new\nline", "\x00\x1f"]
    other = ["é→𝄞", "\ud800"]  # non-ASCII: orjson would write UTF-8 (or refuse)
    numbers = [0, -1, 2**64 - 1, -(2**63), 1.5, -0.0, 1e300, 5e-324, 1e16, 0.1 + 0.2]
    for _ in range(3000):
        texts = plain + other if rng.random() < 0.3 else plain
        values = numbers + [2**70, math.inf] if rng.random() < 0.2 else numbers
        payload = random_payload(rng, texts, values)
        name, measurements, metadata, ts, cid = payload.values()
        encoded = stderr._orjson_line(name, measurements, metadata, ts, cid)
        line = None if encoded is None else encoded.decode("ascii")
        strings = [name, cid or "", *measurements, *metadata, *metadata.values()]
        needs_fallback = any(not s.isascii() for s in strings) or any(
            v in (2**70, math.inf) for v in measurements.values()
        )
        if stderr._orjson is None:
            assert line is None  # this environment has no orjson: the other paths write
        elif needs_fallback:
            assert line is None, payload
        else:
            assert line is not None, payload
            assert line.startswith(PREFIX) and line.endswith("\n") and line.count("\n") == 1
            assert line.isascii()
            assert json.loads(line[len(PREFIX) :]) == payload
            outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
            assert " " not in outside_strings  # compact separators
        # Whichever path writes it, the backend's line reads back as the payload.
        out = io.StringIO()
        StderrBackend(out).emit(name, measurements, metadata, cid)
        if line is not None or stderr._fast_line(name, measurements, metadata, ts, cid):
            (written,) = lines_of(out)
            event = parse(written)
            assert {k: event[k] for k in KEYS if k != "timestamp_ns"} == {
                k: payload[k] for k in KEYS if k != "timestamp_ns"
            }


@pytest.mark.parametrize("kind", ["pipe", "regular file"])
def test_threads_writing_to_a_real_file_never_break_lines(kind: str, tmp_path: Any) -> None:
    """Lines go straight to the file descriptor, under the lock: a line over
    PIPE_BUF takes several write(2) calls on a full pipe, and a lock-free
    small line once slipped into one of them."""
    threads_n, per_thread = 8, 500
    big = "x" * 5000  # over PIPE_BUF (4096 bytes)
    chunks: list[bytes] = []
    if kind == "pipe":
        read_fd, write_fd = os.pipe()
        out = os.fdopen(write_fd, "w")
        reader = threading.Thread(
            target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 65536), b""))
        )
        reader.start()
    else:
        path = tmp_path / "stderr.txt"
        out = open(path, "w")  # noqa: SIM115 - closed below
    backend = StderrBackend(out)
    out.write("partial ")  # a caller's own unfinished text goes out first

    def work(t: int) -> None:
        for i in range(per_thread):
            backend.emit("a.b", {"i": i}, {"t": str(t), "big": big if i % 100 == 0 else ""}, None)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.close()
    if kind == "pipe":
        reader.join()
        text = b"".join(chunks).decode()
    else:
        text = path.read_text()
    assert text.startswith("partial " + PREFIX)
    lines = text[len("partial ") :].splitlines()
    assert len(lines) == threads_n * per_thread
    seen = sorted((e["metadata"]["t"], e["measurements"]["i"]) for e in map(parse, lines))
    assert seen == sorted((str(t), i) for t in range(threads_n) for i in range(per_thread))
    assert backend.stats() == {
        "written": threads_n * per_thread,
        "encode_errors": 0,
        "write_errors": 0,
    }


def test_values_the_json_path_refuses_are_refused_whichever_encoder_runs() -> None:
    class Floaty(float):
        pass

    for measurements, metadata in [
        ({"x": Floaty("nan")}, {}),
        ({"x": math.inf}, {}),
        ({}, {"k": math.nan}),
    ]:
        out = io.StringIO()
        backend = StderrBackend(out)
        backend.emit("a.b", measurements, metadata, None)
        assert out.getvalue() == ""
        assert backend.stats()["encode_errors"] == 1
