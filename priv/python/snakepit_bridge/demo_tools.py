"""Tools of the demo and of the end-to-end tests, registered on import.

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
from typing import Any

from snakepit_bridge import telemetry
from snakepit_bridge.tools import ToolContext, ToolError, tool

__all__ = ["emit_random", "telemetry_demo", "telemetry_state"]


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
