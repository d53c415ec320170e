"""The hand-written protobuf encoder produces the messages the runtime would.

Every test runs twice: with the native encoder first (``_speedups``, which
takes the fast cases and hands the rest back) and in pure Python.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

import pytest

from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.telemetry import wire
from snakepit_bridge.telemetry.wire import BATCH_TOTAL_TAGS, EventEncoder

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(autouse=True, params=["native", "python"])
def encoder_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test with EventEncoder() trying the native encoder first, or not."""
    if request.param == "python":
        monkeypatch.setattr(wire, "NATIVE", None)
    elif wire.NATIVE is None:
        if os.environ.get("SNAKEPIT_REQUIRE_SPEEDUPS") == "1":
            pytest.fail("the native encoder (_speedups) is not built; scripts/setup.sh builds it")
        pytest.skip("the native encoder is not built, or SNAKEPIT_BRIDGE_PURE_PYTHON is set")
    return request.param


def reference_value(value: Any) -> pb.TelemetryValue | None:
    """TelemetryValue built by the protobuf runtime, per the documented mapping."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return pb.TelemetryValue(int_value=value)
        try:
            return pb.TelemetryValue(float_value=float(value))
        except OverflowError:
            return None
    if isinstance(value, float):
        return pb.TelemetryValue(float_value=value)
    if isinstance(value, str):
        return pb.TelemetryValue(string_value=value.encode("utf-8", "replace").decode())
    return None


def clean(text: Any) -> str:
    return str(text).encode("utf-8", "replace").decode()


def reference_event(event: tuple) -> pb.TelemetryEvent:
    name, measurements, metadata, timestamp_ns, correlation_id = event
    values = {clean(k): reference_value(v) for k, v in measurements.items()}
    return pb.TelemetryEvent(
        event_parts=[clean(p) for p in name.split(".")],
        measurements={k: v for k, v in values.items() if v is not None},
        metadata={clean(k): clean(v) for k, v in metadata.items()},
        timestamp_ns=timestamp_ns,
        correlation_id=clean(correlation_id or ""),
    )


EDGE_INTS = [
    0,
    1,
    127,
    128,
    16_383,
    16_384,
    2**21 - 1,
    2**21,
    2**28 - 1,
    2**28,
    2**35,
    INT64_MAX,
    -1,
    -128,
    INT64_MIN,
    INT64_MAX + 1,
    2**70,
    -(2**70),
]
EDGE_FLOATS = [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, 123456789.125]
EDGE_TIMESTAMPS = [0, 1, 127, 2**28 - 1, 2**28, 2**35 + 12345, time.time_ns(), INT64_MAX]


@pytest.mark.parametrize("value", EDGE_INTS + EDGE_FLOATS + [True, False, "12 apples", ""])
def test_measurement_values(value: Any) -> None:
    event = ("a.b", {"v": value}, {}, 1, None)
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert got == reference_event(event)
    kind = got.measurements["v"].WhichOneof("value")
    if type(value) is int:
        assert kind == ("int_value" if INT64_MIN <= value <= INT64_MAX else "float_value")
    elif type(value) is float:
        assert kind == "float_value"


def test_values_the_wire_cannot_carry_are_left_out() -> None:
    event = ("a.b", {"huge": 10**400, "obj": object(), "none": None, "ok": 1}, {}, 1, None)
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert set(got.measurements) == {"ok"}


def test_nan_and_infinity_stay_doubles() -> None:
    # The public emit drops them earlier; the encoder itself just encodes doubles.
    event = ("a.b", {"inf": math.inf, "nan": math.nan}, {}, 1, None)
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert got.measurements["inf"].float_value == math.inf
    assert math.isnan(got.measurements["nan"].float_value)


@pytest.mark.parametrize("timestamp_ns", EDGE_TIMESTAMPS)
def test_timestamps(timestamp_ns: int) -> None:
    event = ("a.b", {}, {}, timestamp_ns, None)
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert got.timestamp_ns == timestamp_ns


def test_strings_are_utf8_with_lone_surrogates_replaced() -> None:
    event = ("płyn.ü\ud800", {"k\udfff": 1}, {"ключ": "значение", "s": "a\ud800b"}, 5, "id-\ud800")
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert list(got.event_parts) == ["płyn", "ü?"]
    assert dict(got.metadata) == {"ключ": "значение", "s": "a?b"}
    assert got.correlation_id == "id-?"
    assert list(got.measurements) == ["k?"]


def test_non_string_metadata_and_keys_are_stringified() -> None:
    event = ("a", {1: 2}, {"n": 3, 4: True, "l": [1]}, 1, None)
    (body,), kept, failed = EventEncoder().encode_safe([event], framed=False)
    assert failed == 0 and kept == [event]
    got = pb.TelemetryEvent.FromString(body)
    assert dict(got.metadata) == {"n": "3", "4": "true", "l": "[1]"}
    assert got.measurements["1"].int_value == 2


def test_empty_name_parts_and_long_strings() -> None:
    long_value = "v" * 100_000
    event = ("a..b", {"m" * 300: 1}, {"k": long_value}, 1, "c" * 500)
    got = pb.TelemetryEvent.FromString(EventEncoder().event(event))
    assert got == reference_event(event)


def test_random_events_match_the_runtime() -> None:
    rng = random.Random(42)
    encoder = EventEncoder(cache_limit=16)  # exercises cache clearing too
    names = ["python.call.start", "tool.result_size", "x", "a.b.c.d.e.f"]
    events = []
    for _ in range(500):
        measurements: dict[str, Any] = {}
        for i in range(rng.randint(0, 4)):
            choice = rng.random()
            if choice < 0.5:
                measurements[f"m{i}"] = rng.choice(EDGE_INTS + [rng.randint(0, 10**12)])
            else:
                measurements[f"m{i}"] = rng.choice(EDGE_FLOATS + [rng.uniform(-1e6, 1e6)])
        metadata = {f"k{rng.randint(0, 30)}": f"v{rng.randint(0, 30)}" for _ in range(3)}
        cid = rng.choice([None, "", f"req-{rng.randint(0, 50)}"])
        ts = rng.choice(EDGE_TIMESTAMPS + [time.time_ns() + rng.randint(0, 10**12)])
        events.append((rng.choice(names), measurements, metadata, ts, cid))
    batch = pb.TelemetryEventBatch.FromString(encoder.batch(events))
    assert list(batch.events) == [reference_event(e) for e in events]
    for event in events[:50]:
        assert pb.TelemetryEvent.FromString(encoder.event(event)) == reference_event(event)


def test_batch_totals() -> None:
    totals = [(BATCH_TOTAL_TAGS[k], v) for k, v in (("dropped_total", 3), ("emitted_total", 2**40))]
    totals += [(BATCH_TOTAL_TAGS["sampled_out_total"], 0)]
    totals += [(BATCH_TOTAL_TAGS["filtered_out_total"], 7), (BATCH_TOTAL_TAGS["disabled_total"], 9)]
    batch = pb.TelemetryEventBatch.FromString(EventEncoder().batch([], totals))
    assert batch == pb.TelemetryEventBatch(
        dropped_total=3,
        emitted_total=2**40,
        filtered_out_total=7,
        disabled_total=9,
    )


def test_batch_total_tags_match_the_proto() -> None:
    fields = pb.TelemetryEventBatch.DESCRIPTOR.fields_by_name
    for field_name, tag in BATCH_TOTAL_TAGS.items():
        assert tag == bytes([fields[field_name].number << 3])  # varint wire type 0


def test_varint_matches_a_reference() -> None:
    def reference(v: int) -> bytes:
        out = bytearray()
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    values = [0, 1, 127, 128, 300, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**64 - 1]
    values += [random.Random(1).randint(0, 2**64 - 1) for _ in range(200)]
    for v in values:
        assert wire.varint(v) == reference(v)


def test_caches_stay_bounded() -> None:
    encoder = EventEncoder(cache_limit=8)
    for i in range(100):
        encoder.event((f"n.{i}", {f"k{i}": i}, {"a": str(i)}, 1, f"c{i}"))
    assert all(
        len(cache) <= 8 for cache in (encoder._names, encoder._keys, encoder._meta, encoder._cid)
    )
