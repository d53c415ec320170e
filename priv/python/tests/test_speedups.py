"""The native encoder (``snakepit_bridge.telemetry._speedups``, Rust) writes
the same bytes as the pure-Python one, hands back every batch it does not
take, and is left out when it is stale or turned off."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge.telemetry import wire
from snakepit_bridge.telemetry.frames import Frames
from snakepit_bridge.telemetry.stream import TelemetryStream
from snakepit_bridge.telemetry.wire import EventEncoder

if wire.NATIVE is None:
    if os.environ.get("SNAKEPIT_REQUIRE_SPEEDUPS") == "1":
        raise RuntimeError("the native encoder (_speedups) is not built (scripts/setup.sh)")
    pytest.skip(
        "the native encoder is not built, or SNAKEPIT_BRIDGE_PURE_PYTHON is set",
        allow_module_level=True,
    )

from snakepit_bridge.telemetry import _speedups  # noqa: E402

INTS = [0, 1, 127, 128, 2**14, 2**28 - 1, 2**28, 2**35, 2**63 - 1, -1, -(2**63)]
FLOATS = [0.0, -0.0, 1.5, 1e300, 5e-324, float("inf"), float("-inf")]
TEXTS = ["", "a", "płyn", "ключ", "x" * 300, "🐍", "a.b"]


def fast_event(rng: random.Random) -> tuple:
    """An event as ``telemetry.emit`` queues it."""
    name = ".".join(rng.choice(TEXTS[:6]) for _ in range(rng.randint(1, 4)))
    measurements: dict[str, Any] = {}
    for _ in range(rng.randint(0, 4)):
        measurements[rng.choice(TEXTS)] = rng.choice(
            INTS + FLOATS + [rng.randint(-(2**63), 2**63 - 1), rng.uniform(-1e9, 1e9), "str"]
        )
    metadata = {rng.choice(TEXTS): rng.choice(TEXTS) for _ in range(rng.randint(0, 4))}
    ts = rng.choice([0, 1, -5, time.time_ns(), 2**63 - 1, -(2**63)])
    return (name, measurements, metadata, ts, rng.choice([None, "", "req-1", "ключ"]))


class Weird(str):
    pass


# Each is outside the fast path for one reason: the batch goes to Python.
SLOW_EVENTS = [
    ("a\ud800", {}, {}, 1, None),  # lone surrogate in the name
    ("a", {"k\udfff": 1}, {}, 1, None),
    ("a", {}, {"k": "v\ud800"}, 1, None),
    ("a", {}, {}, 1, "c\ud800"),
    (Weird("a"), {}, {}, 1, None),  # str subclass
    ("a", {1: 2}, {}, 1, None),  # non-str key
    ("a", {"k": 2**63}, {}, 1, None),  # int beyond int64
    ("a", {"k": -(2**63) - 1}, {}, 1, None),
    ("a", {"k": True}, {}, 1, None),  # bool
    ("a", {"k": None}, {}, 1, None),
    ("a", {}, {"k": 3}, 1, None),  # non-str metadata value
    ("a", {}, {"k": [1]}, 1, None),  # unhashable, not even cacheable in Python
    ("a", {}, {}, 2**64, None),  # timestamp beyond int64
    ("a", {}, {}, 1, 7),  # non-str correlation id
    ("a", {}, {}, 1.5, None),
    ("a", [("k", 1)], {}, 1, None),  # not a dict
]


@pytest.mark.parametrize("framed", [False, True])
def test_random_fast_events_give_the_python_bytes(framed: bool) -> None:
    rng = random.Random(7)
    events = [fast_event(rng) for _ in range(2000)]
    native = _speedups.encode(events, framed)
    assert native is not None
    assert native == EventEncoder(native=False).encode(events, framed)


@pytest.mark.parametrize("event", SLOW_EVENTS, ids=range(len(SLOW_EVENTS)))
def test_a_batch_with_a_slow_event_is_handed_back_and_encoded_in_python(event: tuple) -> None:
    batch = [("ok", {"n": 1}, {}, 5, None), event]
    assert _speedups.encode(batch, True) is None
    python = EventEncoder(native=False).encode_safe(batch, framed=True)
    assert EventEncoder().encode_safe(batch, framed=True) == python


@pytest.mark.parametrize(
    "events", [(), ("a", {}, {}, 1, None), [("a", {}, {})], [["a", {}, {}, 1, None]], [None], [3]]
)
def test_shapes_it_does_not_take_are_handed_back(events: Any) -> None:
    assert _speedups.encode(events, True) is None


def test_an_empty_list_is_no_pieces() -> None:
    assert _speedups.encode([], True) == []


def test_frames_cut_an_over_large_batch_the_same_with_either_encoder() -> None:
    events = [("e", {"n": i}, {"k": "v" * 50}, time.time_ns(), None) for i in range(40)]
    results = []
    for native in (True, False):
        stream = TelemetryStream(max_buffer=100)
        frames = Frames(stream, max_frame_bytes=4096, max_batch_bytes=1024)
        frames._encoder = EventEncoder(native=native)
        stream._buffer.extend(events)
        got = []
        while True:
            frame, count, _ = frames.batch(100, lambda: ())
            if not count:
                break
            got.append((frame, count))
        results.append(got)
    assert results[0] == results[1]
    assert sum(count for _, count in results[0]) == 40 and len(results[0]) > 1


def run_python(code: str, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PYTHON_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() + out.stderr.strip()


def test_the_environment_can_turn_it_off() -> None:
    code = "from snakepit_bridge.telemetry import wire; print(wire.NATIVE is None)"
    assert run_python(code, SNAKEPIT_BRIDGE_PURE_PYTHON="1") == "True"
    assert run_python(code, SNAKEPIT_BRIDGE_PURE_PYTHON="0") == "False"


def test_a_library_of_another_wire_version_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_speedups, "WIRE_VERSION", wire.WIRE_VERSION + 1)
    assert wire._native_encoder() is None
    monkeypatch.undo()
    assert wire._native_encoder() is _speedups.encode


@pytest.mark.parametrize("failure", ["panic", "error"])
def test_a_failing_native_encoder_loses_no_batch_and_is_left_out(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(events: Any, framed: bool) -> Any:
        calls.append(len(events))
        if failure == "panic":
            raise _speedups.PanicException("a bug")  # what a Rust panic raises
        raise RuntimeError("a bug")

    events = [("tool.result_size", {"bytes": 1}, {"k": "v"}, time.time_ns(), "c")] * 3
    encoder = EventEncoder()
    encoder._native = broken
    assert encoder.encode(events, True) == EventEncoder(native=False).encode(events, True)
    assert encoder.encode(events, True) == EventEncoder(native=False).encode(events, True)
    assert calls == [3]  # not tried again
    assert "the native telemetry encoder failed" in caplog.text


def test_panic_exception_is_a_base_exception() -> None:
    # Why wire.py names it: `except Exception` would not catch it.
    assert not issubclass(_speedups.PanicException, Exception)
