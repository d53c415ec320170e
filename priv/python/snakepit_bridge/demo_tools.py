"""Tools of the demo and of the end-to-end tests, registered on import.

* ``telemetry_demo`` -- the seeds' demo tool: ``operation`` (str) and
  ``delay_ms`` (int, 0..10000); sleeps, emits its own spans and events, and
  returns ``{"operation", "delay_ms", "events_emitted", "result"}``.
* ``telemetry_state`` -- the worker's telemetry settings and counters (what
  the control frames from Elixir set), so callers can see a setting applied.
"""

from __future__ import annotations

import time
from typing import Any

from snakepit_bridge import telemetry
from snakepit_bridge.tools import ToolContext, ToolError, tool

__all__ = ["telemetry_demo", "telemetry_state"]


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
