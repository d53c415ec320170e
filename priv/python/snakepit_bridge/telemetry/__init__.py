"""Telemetry for Python workers, delivered to Elixir as ``:telemetry`` events.

::

    from snakepit_bridge import telemetry

    with telemetry.span("tool.execution", {"tool": "predict"}, correlation_id="req-1") as s:
        result = predict()
        telemetry.emit("tool.result_size", {"bytes": len(result)}, {"tool": "predict"})
        s.set_measurement("count", 1)

Event names are the Python names of the shared catalog
(``priv/catalog/telemetry_catalog.json``, see :mod:`snakepit_bridge.catalog`):
``python.call.start`` becomes ``[:snakepit, :python, :call, :start]``,
``tool.result_size`` becomes ``[:snakepit, :python, :tool, :result_size]``.

Public API:

* :func:`emit` -- one event; never raises, cheap, a no-op while telemetry is off;
* :func:`span` -- ``.start`` / ``.stop`` / ``.exception`` events around a block;
* :func:`set_backend`, :func:`get_backend`, :func:`is_enabled` -- where events go
  (``PYTHON_SNAKEPIT_TELEMETRY=stderr`` selects the stderr backend at import; the
  gRPC worker installs :class:`~.backends.grpc.GrpcBackend` feeding a
  :class:`TelemetryStream`, see :mod:`.stream`);
* :func:`current_correlation_id`, :func:`use_correlation_id` -- the correlation
  id that ``emit`` uses by default; the reference package's helpers on the same
  id: :data:`CORRELATION_HEADER`, :func:`new_correlation_id`,
  :func:`set_correlation_id`, :func:`reset_correlation_id`,
  :func:`get_correlation_id`, :func:`outgoing_metadata`, :func:`correlation_filter`;
* :func:`setup_tracing`, :func:`get_tracer`, :func:`otel_span` -- OpenTelemetry,
  optional, as in the reference package (see :mod:`.otel`);
* :func:`stats` -- what the helpers dropped (see :mod:`.stats`).

Value coercion rules are in :mod:`snakepit_bridge.telemetry.coerce`.
"""

from __future__ import annotations

from .backends.base import TelemetryBackend
from .context import (
    CORRELATION_HEADER,
    correlation_filter,
    current_correlation_id,
    get_correlation_id,
    new_correlation_id,
    outgoing_metadata,
    reset_correlation_id,
    set_correlation_id,
    use_correlation_id,
)
from .emitter import emit
from .manager import get_backend, is_enabled, set_backend
from .otel import get_tracer, otel_span, setup_tracing
from .span import Span, span
from .stats import snapshot as stats

__all__ = [
    "CORRELATION_HEADER",
    "Span",
    "TelemetryBackend",
    "TelemetryStream",
    "correlation_filter",
    "current_correlation_id",
    "emit",
    "get_backend",
    "get_correlation_id",
    "get_tracer",
    "is_enabled",
    "new_correlation_id",
    "otel_span",
    "outgoing_metadata",
    "reset_correlation_id",
    "set_backend",
    "set_correlation_id",
    "setup_tracing",
    "span",
    "stats",
    "use_correlation_id",
]


def __getattr__(name: str) -> object:
    # TelemetryStream imports asyncio: loaded on first use, so that programs
    # using only emit/span with the stderr backend do not pay for it.
    if name == "TelemetryStream":
        from .stream import TelemetryStream

        return TelemetryStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
