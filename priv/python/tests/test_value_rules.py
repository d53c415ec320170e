"""Python's side of the value rules table (``priv/catalog/value_rules.json``):
a value goes through the public coercion and the wire encoder, and what the
protobuf runtime parses back is what the table says Elixir receives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import PYTHON_ROOT

from snakepit_bridge import catalog
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.telemetry import text
from snakepit_bridge.telemetry.coerce import coerce_measurements, coerce_metadata
from snakepit_bridge.telemetry.policy import matches
from snakepit_bridge.telemetry.wire import EventEncoder

RULES = json.loads((PYTHON_ROOT.parent / "catalog" / "value_rules.json").read_text("utf-8"))
MAX_VALUE = catalog.limits()["max_metadata_value_bytes"]


def _value(spec: Any) -> Any:
    if isinstance(spec, dict):
        return spec["repeat"] * spec["times"]
    return spec


def _cases(kind: str) -> list[Any]:
    cases = [c for c in RULES[kind] if "python" in c["paths"]]
    return [pytest.param(c, id=c["case"]) for c in cases]


def _on_the_wire(measurements: dict, metadata: dict) -> pb.TelemetryEvent:
    body = EventEncoder().event(("tool.result_size", measurements, metadata, 1, None))
    return pb.TelemetryEvent.FromString(body)


@pytest.mark.parametrize("case", _cases("measurements"))
def test_measurements_follow_the_table(case: dict) -> None:
    wire = _on_the_wire(coerce_measurements({"m": _value(case["input"])}), {})
    if case["expect"] == "refused":
        assert "m" not in wire.measurements
        return
    want = case["expect"]["value"]
    got = wire.measurements["m"]
    kind = got.WhichOneof("value")
    assert (kind, getattr(got, kind)) == (
        "int_value" if type(want) is int else "float_value",
        want,
    )


@pytest.mark.parametrize("case", _cases("metadata"))
def test_metadata_follows_the_table(case: dict) -> None:
    value = _value(case["input"])
    if isinstance(case["input"], dict):
        # Cutting is the receiver's rule; Python cuts its own long texts
        # (error messages, tracebacks) with the same function.
        assert text.head_utf8(value, MAX_VALUE) == _value(case["expect"]["value"])
        return
    wire = _on_the_wire({}, coerce_metadata({"k": value}))
    if case["expect"] == "dropped":
        assert "k" not in wire.metadata
    else:
        assert wire.metadata["k"] == case["expect"]["value"]


def test_utf8_cuts_never_split_a_character() -> None:
    s = "aé" * 10  # é is 2 bytes
    assert text.head_utf8(s, 2) == "a"
    assert text.head_utf8(s, 3) == "aé"
    assert text.tail_utf8(s, 2) == "é"
    assert text.tail_utf8(s, 3) == "aé"
    assert text.tail_utf8(s, 1) == ""  # half of an é is dropped
    assert text.tail_utf8("short", 100) == "short"
    assert text.head_utf8("\ud800x", 10) == "?x"  # a lone surrogate


@pytest.mark.parametrize("case", RULES["globs"], ids=lambda c: f"{c['pattern']} ~ {c['name']}")
def test_globs_follow_the_table(case: dict) -> None:
    assert matches(case["name"], (case["pattern"],)) is case["match"]
