"""The tools a worker runs for ``ExecuteTool``: a registry of plain functions.

A tool is a callable ``tool(params, ctx)``:

* ``params`` -- a ``dict`` of the decoded parameters (JSON values);
* ``ctx`` -- a :class:`ToolContext` (correlation id, session id, request
  metadata, binary parameters);
* it returns a JSON-serialisable value (the call's result) or raises (the call
  fails with ``success=False`` and the error message).

Synchronous tools run in a worker thread (``asyncio.to_thread``, which carries
the caller's context, so ``telemetry.emit`` inside inherits the call's
correlation id); ``async def`` tools run on the server's event loop and must not
block it.

Register a tool with the decorator::

    from snakepit_bridge.tools import tool

    @tool("predict")
    def predict(params, ctx):
        return {"label": "cat"}

Built in: ``ping``, ``emit_events`` (telemetry load and tests), ``fail``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge import telemetry

__all__ = ["REGISTRY", "ToolContext", "ToolError", "get", "register", "run", "tool"]

ToolFn = Callable[[dict[str, Any], "ToolContext"], Any]

#: name -> tool. Add entries with :func:`tool` / :func:`register`.
REGISTRY: dict[str, ToolFn] = {}


class ToolError(Exception):
    """A tool's way to fail with a plain message (no traceback is interesting)."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the call besides its parameters."""

    tool_name: str
    correlation_id: str | None = None
    session_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    binary_parameters: Mapping[str, bytes] = field(default_factory=dict)


def register(name: str, fn: ToolFn) -> ToolFn:
    """Adds (or replaces) the tool ``name``."""
    if not name or not callable(fn):
        raise ValueError("a tool needs a non-empty name and a callable")
    REGISTRY[name] = fn
    return fn


def tool(name: str | None = None) -> Callable[[ToolFn], ToolFn]:
    """Decorator: registers the function as a tool (named after it by default)."""

    def decorate(fn: ToolFn) -> ToolFn:
        return register(name or fn.__name__, fn)

    return decorate


def get(name: str) -> ToolFn | None:
    """The tool ``name``, or ``None``."""
    return REGISTRY.get(name)


async def run(fn: ToolFn, params: dict[str, Any], ctx: ToolContext) -> Any:
    """Runs a tool: awaited if it is a coroutine function, else in a thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(params, ctx)
    result = await asyncio.to_thread(fn, params, ctx)
    if inspect.isawaitable(result):  # a sync callable that returned a coroutine
        result = await _await(result)
    return result


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# --- built-in tools -----------------------------------------------------------


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


@tool("ping")
def ping(params: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """``{"pong": true, "message": <params.message>, "pid": <worker pid>,
    "correlation_id": <the call's id or null>}``."""
    return {
        "pong": True,
        "message": params.get("message", ""),
        "pid": os.getpid(),
        "correlation_id": ctx.correlation_id,
    }


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
