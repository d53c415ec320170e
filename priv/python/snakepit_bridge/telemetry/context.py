"""The correlation id of the code that is running now.

One :class:`contextvars.ContextVar` holds it, so it follows the flow of control:
each thread and each asyncio task sees its own value, and a task inherits the
value that was current when it was created. :func:`snakepit_bridge.telemetry.span`
sets it for the duration of a span that was given a correlation id;
``emit(..., correlation_id=None)`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token

__all__ = [
    "current_correlation_id",
    "reset_correlation_id",
    "set_correlation_id",
    "use_correlation_id",
]

_CORRELATION_ID: ContextVar[str | None] = ContextVar("snakepit_correlation_id", default=None)

#: Bound method, for callers on the hot path (``emit``).
get_correlation_id = _CORRELATION_ID.get


def current_correlation_id() -> str | None:
    """The correlation id in effect here, or ``None`` outside any correlated span."""
    return _CORRELATION_ID.get()


def set_correlation_id(correlation_id: str | None) -> Token[str | None]:
    """Makes ``correlation_id`` current; pass the returned token to
    :func:`reset_correlation_id` (in the same context) to restore the previous one."""
    return _CORRELATION_ID.set(correlation_id)


def reset_correlation_id(token: Token[str | None]) -> None:
    """Restores the correlation id that was current before ``set_correlation_id``.

    Never raises: a token from another context (e.g. a span exited in a
    different task than it was entered in) is ignored."""
    with suppress(ValueError, RuntimeError):
        _CORRELATION_ID.reset(token)


@contextmanager
def use_correlation_id(correlation_id: str | None) -> Iterator[str | None]:
    """Makes ``correlation_id`` current inside the ``with`` block, without emitting
    anything (e.g. a request handler that received an id from Elixir)."""
    token = _CORRELATION_ID.set(correlation_id)
    try:
        yield correlation_id
    finally:
        reset_correlation_id(token)
