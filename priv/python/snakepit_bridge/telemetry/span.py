"""``span``: times a block of code and reports it as start/stop/exception events."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from contextvars import Token
from types import TracebackType
from typing import Any

from snakepit_bridge import catalog

from .coerce import coerce_metadata
from .context import current, reset_correlation_id, set_correlation_id
from .emitter import emit
from .otel import get_tracer
from .text import head_utf8

__all__ = ["Span", "span"]

#: ``error_message`` is cut to this many UTF-8 bytes (the receiver's limit).
MAX_ERROR_MESSAGE_BYTES: int = catalog.limits()["max_metadata_value_bytes"]


class Span:
    """A timed operation; create it with :func:`span`.

    Events (``operation`` is e.g. ``"tool.execution"``):

    * on enter: ``f"{operation}.start"`` with ``{"system_time": time.time_ns()}``
      (plus the ``start_measurements`` given to :func:`span`, e.g. a request size)
      and the span's metadata;
    * on normal exit: ``f"{operation}.stop"`` with ``{"duration": ns}``;
    * when the block raises (any ``BaseException``, including cancellation):
      ``f"{operation}.exception"`` with ``{"duration": ns}`` and the metadata plus
      ``error_type`` (the exception's class name) and ``error_message``
      (``str(exc)``, cut to ``max_metadata_value_bytes`` UTF-8 bytes, lone
      surrogates replaced by ``?``); the exception then propagates unchanged.

    ``duration`` is measured with ``time.monotonic_ns()`` in nanoseconds. Values
    added with :meth:`set_measurement` / :meth:`set_metadata` inside the block go
    into the stop or exception event (not the start event); ``duration``,
    ``error_type`` and ``error_message`` cannot be overridden that way.

    With tracing set up (:func:`~.otel.setup_tracing`) the span is also an
    OpenTelemetry span of the same name, the metadata (and
    ``snakepit.correlation_id``) as attributes, the exception recorded and
    the status an error when the block raises.

    Correlation: the events carry the span's ``correlation_id`` if one was given
    (it is then the current id inside the block, so nested ``emit`` and ``span``
    calls inherit it), else the id current when the span was entered.

    A span is used once, with ``with`` or ``async with``. The span itself never
    raises into the block or out of it (apart from re-entering it, a
    programming error reported with :class:`RuntimeError`).
    """

    __slots__ = (
        "_correlation_id",
        "_start_measurements",
        "_extra_measurements",
        "_extra_metadata",
        "_metadata",
        "_operation",
        "_otel",
        "_start_ns",
        "_token",
    )

    def __init__(
        self,
        operation: str,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        start_measurements: Mapping[str, Any] | None = None,
    ) -> None:
        self._operation = operation
        self._start_measurements = start_measurements
        self._metadata = coerce_metadata(metadata)
        self._correlation_id = (
            correlation_id
            if correlation_id is None or type(correlation_id) is str
            else str(correlation_id)
        )
        self._extra_measurements: dict[str, Any] | None = None
        self._extra_metadata: dict[str, Any] | None = None
        self._start_ns: int | None = None
        self._token: Token[str | None] | None = None
        self._otel: Any = None

    @property
    def operation(self) -> str:
        """The operation name the events are built from."""
        return self._operation

    @property
    def correlation_id(self) -> str | None:
        """The correlation id of the span's events (known once entered)."""
        return self._correlation_id

    def set_measurement(self, key: str, value: Any) -> None:
        """Adds a measurement to the stop/exception event (coerced like ``emit``'s)."""
        if self._extra_measurements is None:
            self._extra_measurements = {}
        self._extra_measurements[key] = value

    def set_metadata(self, key: str, value: Any) -> None:
        """Adds metadata to the stop/exception event (coerced like ``emit``'s)."""
        if self._extra_metadata is None:
            self._extra_metadata = {}
        self._extra_metadata[key] = value

    def __enter__(self) -> Span:
        if self._start_ns is not None:
            raise RuntimeError("a span can be entered only once")
        if self._correlation_id is None:
            self._correlation_id = current()
        else:
            self._token = set_correlation_id(self._correlation_id)
        tracer = get_tracer()
        if tracer is not None:
            # With tracing set up the span is an OpenTelemetry span too (same
            # name, the metadata as attributes, error status on exception),
            # started first so its own events carry its ids.
            attributes = {**self._metadata, "snakepit.correlation_id": self._correlation_id or ""}
            self._otel = tracer.start_as_current_span(self._operation, attributes=attributes)
            self._otel.__enter__()
        start = self._start_measurements
        emit(
            self._operation + ".start",
            {"system_time": time.time_ns()}
            if start is None
            else {**start, "system_time": time.time_ns()},
            self._metadata,
            self._correlation_id,
        )
        self._start_ns = time.monotonic_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.monotonic_ns() - (self._start_ns or 0)
        try:
            extra = self._extra_measurements
            measurements = (
                {"duration": duration} if extra is None else {**extra, "duration": duration}
            )
            metadata = self._metadata
            if self._extra_metadata is not None:
                metadata = {**metadata, **self._extra_metadata}
            if exc_type is None:
                suffix = ".stop"
            else:
                suffix = ".exception"
                metadata = {
                    **metadata,
                    "error_type": exc_type.__name__,
                    "error_message": _bounded_message(exc),
                }
            emit(self._operation + suffix, measurements, metadata, self._correlation_id)
        except Exception:  # e.g. an exception whose __str__ raises; never mask the block's
            pass
        finally:
            if self._otel is not None:
                otel, self._otel = self._otel, None
                with contextlib.suppress(Exception):
                    otel.__exit__(exc_type, exc, tb)
            if self._token is not None:
                reset_correlation_id(self._token)
                self._token = None
        # Returning None lets any exception propagate unchanged.

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def span(
    operation: str,
    metadata: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    *,
    start_measurements: Mapping[str, Any] | None = None,
) -> Span:
    """Times the ``with`` (or ``async with``) block as ``operation``; see :class:`Span`.

    ::

        with span("tool.execution", {"tool": name}, correlation_id=request_id) as s:
            result = run(name)
            s.set_measurement("count", len(result))

    ``start_measurements`` go into the start event next to ``system_time``
    (which they cannot override), e.g. ``{"request_size": n}`` for ``python.call``.
    """
    return Span(operation, metadata, correlation_id, start_measurements)


def _bounded_message(exc: BaseException | None) -> str:
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    return head_utf8(message, MAX_ERROR_MESSAGE_BYTES)
