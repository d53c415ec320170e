"""Tools of the demo and of the end-to-end tests, registered on import.
A worker loads them only when asked (``grpc_server.py --demo-tools``): a
production worker exposes its user's tools and ``ping``, never a tool that
emits ten million events on request.

* ``emit_events`` -- telemetry load: ``count`` events of ``event`` (see its
  docstring), optionally paced;
* ``fail`` -- always raises;

* ``telemetry_demo`` -- the seeds' demo tool: ``operation`` (str) and
  ``delay_ms`` (int, 0..10000); sleeps, emits its own spans and events, and
  returns ``{"operation", "delay_ms", "events_emitted", "result"}``.
* ``telemetry_state`` -- the worker's telemetry settings and counters (what
  the control frames from Elixir set), so callers can see a setting applied.
* ``emit_random`` -- hostile-input load: ``count`` events whose names,
  measurement keys and metadata keys are mostly random strings (``seed``
  makes it repeatable); pauses ``pause_ms`` after every 256 events so a
  bounded queue keeps up. Used by the atom-safety tests.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Mapping
from typing import Any

from snakepit_bridge import telemetry
from snakepit_bridge.tools import ToolContext, ToolError, tool

__all__ = ["emit_events", "emit_random", "fail", "telemetry_demo", "telemetry_state"]


@tool("telemetry_demo")
def telemetry_demo(params: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Simulates a unit of work with nested telemetry."""
    operation = str(params.get("operation", "demo"))
    try:
        delay_ms = int(params.get("delay_ms", 0))
    except (TypeError, ValueError) as exc:
        raise ToolError(f"delay_ms must be an integer, got {params.get('delay_ms')!r}") from exc
    if not 0 <= delay_ms <= 10_000:
        raise ToolError("delay_ms must be between 0 and 10000")
    with telemetry.span("tool.execution", {"tool": "telemetry_demo.inner", "operation": operation}):
        time.sleep(delay_ms / 1000)
    telemetry.emit(
        "tool.result_size",
        {"bytes": len(operation) * 8, "message_size": delay_ms},
        {"tool": "telemetry_demo", "operation": operation},
    )
    return {
        "operation": operation,
        "delay_ms": delay_ms,
        "events_emitted": 3,
        "result": f"{operation} done in {delay_ms} ms",
    }


@tool("telemetry_state")
def telemetry_state(params: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The telemetry settings in force and the stream's running counters."""
    backend = telemetry.get_backend()
    stream = getattr(backend, "stream", None)
    if stream is None:
        return {"backend": type(backend).__name__ if backend else None}
    stats = stream.stats()
    return {
        "backend": type(backend).__name__,
        **stream.settings(),
        **stats,
        "streams_opened": stats.get("streams", 0),
        "active_streams": stats.get("attached", 0),
    }


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + "_", k=rng.randint(3, 12)))


@tool("emit_random")
def emit_random(params: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Emits events with random names and keys (some valid, most not)."""
    rng = random.Random(params.get("seed", 0))
    count = max(0, min(int(params.get("count", 1000)), 1_000_000))
    pause = max(0.0, float(params.get("pause_ms", 0))) / 1000
    valid = ["python.call.start", "tool.result_size", "tool.execution.stop"]
    for i in range(count):
        roll = rng.random()
        if roll < 0.3:
            name = rng.choice(valid)
        elif roll < 0.6:
            name = f"python.{_word(rng)}.{_word(rng)}"
        else:
            name = ".".join(_word(rng) for _ in range(rng.randint(1, 5)))
        measurements = {_word(rng): rng.randint(0, 1000) for _ in range(rng.randint(0, 4))}
        measurements["count"] = 1
        metadata = {_word(rng): _word(rng) for _ in range(rng.randint(0, 6))}
        telemetry.emit(name, measurements, metadata, f"rand-{i}")
        if pause and i % 256 == 255:
            time.sleep(pause)
    return {"emitted": count}


def _int_param(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ToolError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ToolError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _number_param(
    params: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = params.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ToolError(f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _dict_param(params: Mapping[str, Any], name: str, default: dict[str, Any]) -> dict[str, Any]:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise ToolError(f"{name} must be an object, got {value!r}")
    return value


@tool("emit_events")
def emit_events(params: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Emits ``count`` telemetry events (from a worker thread).

    Parameters: ``event`` (Python name, default ``"tool.result_size"``),
    ``count`` (default 1, at most 10,000,000), ``measurements`` (default
    ``{"bytes": 1}``), ``metadata`` (default ``{}``), ``correlation_id`` (default:
    the call's), ``interval_ms`` (time between events, default 0 = as fast as
    possible; fractions allowed, e.g. ``0.1`` for 10,000 events/s: event ``i`` is
    due ``i * interval_ms`` after the first, so the rate holds on average even
    though a sleep can overshoot). Returns ``{"emitted": count}``.
    """
    event = params.get("event") or "tool.result_size"
    if not isinstance(event, str):
        raise ToolError(f"event must be a string, got {event!r}")
    count = _int_param(params, "count", 1, 0, 10_000_000)
    interval_ms = _number_param(params, "interval_ms", 0.0, 0.0, 60_000.0)
    measurements = _dict_param(params, "measurements", {"bytes": 1})
    metadata = _dict_param(params, "metadata", {})
    correlation_id = params.get("correlation_id") or ctx.correlation_id
    emit = telemetry.emit
    if not interval_ms:
        for _ in range(count):
            emit(event, measurements, metadata, correlation_id)
        return {"emitted": count}
    interval = interval_ms / 1000.0
    start = time.monotonic()
    for i in range(count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emit(event, measurements, metadata, correlation_id)
    return {"emitted": count}


@tool("fail")
def fail(params: dict[str, Any], ctx: ToolContext) -> None:
    """Always raises ``ValueError`` (``params.message`` or a default message)."""
    raise ValueError(params.get("message") or "the fail tool failed on purpose")
