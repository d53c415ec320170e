"""The correlation id of the code that is running now.

One :class:`contextvars.ContextVar` holds it, so it follows the flow of control:
each thread and each asyncio task sees its own value, and a task inherits the
value that was current when it was created. :func:`snakepit_bridge.telemetry.span`
sets it for the duration of a span that was given a correlation id;
``emit(..., correlation_id=None)`` reads it.

The reference Snakepit package's helpers work on the same variable
(:data:`CORRELATION_HEADER`, :func:`new_correlation_id`,
:func:`set_correlation_id`, :func:`reset_correlation_id`,
:func:`get_correlation_id`, :func:`outgoing_metadata`,
:func:`correlation_filter`): code written for it runs unchanged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token

__all__ = [
    "CORRELATION_HEADER",
    "correlation_filter",
    "current_correlation_id",
    "get_correlation_id",
    "new_correlation_id",
    "outgoing_metadata",
    "reset_correlation_id",
    "set_correlation_id",
    "use_correlation_id",
]

#: The gRPC metadata key of the correlation id (both directions).
CORRELATION_HEADER = "x-snakepit-correlation-id"

_CORRELATION_ID: ContextVar[str | None] = ContextVar("snakepit_correlation_id", default=None)

#: Bound method, for callers on the hot path (``emit``).
current = _CORRELATION_ID.get


def current_correlation_id() -> str | None:
    """The correlation id in effect here, or ``None`` outside any correlated span."""
    return _CORRELATION_ID.get()


def set_correlation_id(correlation_id: str | None) -> Token[str | None]:
    """Makes ``correlation_id`` current; pass the returned token to
    :func:`reset_correlation_id` (in the same context) to restore the previous one."""
    return _CORRELATION_ID.set(correlation_id)


def reset_correlation_id(token: Token[str | None] | None) -> None:
    """Restores the correlation id that was current before ``set_correlation_id``.

    Never raises: ``None`` and a token from another context (e.g. a span
    exited in a different task than it was entered in) are ignored."""
    if token is None:
        return
    with suppress(ValueError, RuntimeError, TypeError):
        _CORRELATION_ID.reset(token)


def get_correlation_id(default: str | None = None) -> str | None:
    """The correlation id in effect here, else ``default``."""
    return _CORRELATION_ID.get() or default


def new_correlation_id() -> str:
    """A new random correlation id (a UUID4 as 32 hex characters)."""
    return uuid.uuid4().hex


def outgoing_metadata(
    initial: Iterable[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """gRPC metadata for an outgoing call: ``initial`` (pairs) plus the
    current correlation id under :data:`CORRELATION_HEADER`, if there is one."""
    metadata = list(initial or ())
    correlation_id = _CORRELATION_ID.get()
    if correlation_id:
        metadata.append((CORRELATION_HEADER, correlation_id))
    return metadata


class _CorrelationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _CORRELATION_ID.get() or "-"
        return True


def correlation_filter() -> logging.Filter:
    """A logging filter that gives every record a ``correlation_id`` attribute
    (the current id, else ``"-"``), e.g. for ``%(correlation_id)s`` in a format."""
    return _CorrelationFilter()


@contextmanager
def use_correlation_id(correlation_id: str | None) -> Iterator[str | None]:
    """Makes ``correlation_id`` current inside the ``with`` block, without emitting
    anything (e.g. a request handler that received an id from Elixir)."""
    token = _CORRELATION_ID.set(correlation_id)
    try:
        yield correlation_id
    finally:
        reset_correlation_id(token)
