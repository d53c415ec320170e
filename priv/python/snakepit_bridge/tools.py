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

Built in: ``ping``. The demo and test tools (``emit_events``, ``fail``,
``telemetry_demo``, ``telemetry_state``, ``emit_random``) live in
:mod:`snakepit_bridge.demo_tools` and load only when asked
(``grpc_server.py --demo-tools``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
