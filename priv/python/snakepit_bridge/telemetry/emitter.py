"""``emit``: the one call every instrumentation site makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import manager, otel, stats
from .coerce import coerce_measurements, coerce_metadata
from .context import current

__all__ = ["emit"]


def emit(
    event: str,
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
) -> None:
    """Sends one telemetry event through the active backend.

    ``event`` is the Python name from the catalog, e.g. ``"tool.result_size"``
    (it maps to ``[:snakepit, :python, :tool, :result_size]`` in Elixir). It is
    not checked here: the receiver validates names, keys and sizes, and counts
    what it rejects.

    ``measurements`` and ``metadata`` are coerced as described in
    :mod:`snakepit_bridge.telemetry.coerce` (numbers and numeric strings are
    kept, other measurement values dropped and counted; metadata values become
    strings, ``None`` values are dropped).

    ``correlation_id`` defaults to the current one (set by an enclosing ``span``
    that was given an id), else ``None``; a non-string id is converted with ``str``.

    Guarantees: returns ``None`` and never raises; when no backend is installed
    it returns at once and does nothing; a failing backend loses the event and
    is counted in ``stats()["backend_errors"]``.
    """
    backend = manager.backend
    if backend is None:
        return
    try:
        if correlation_id is None:
            correlation_id = current()
        elif type(correlation_id) is not str:
            correlation_id = str(correlation_id)
        metadata = coerce_metadata(metadata)
        if otel.active and (ids := otel.current_ids()) is not None:
            metadata = {**metadata, "trace_id": ids[0], "span_id": ids[1]}
        backend.emit(event, coerce_measurements(measurements), metadata, correlation_id)
    except Exception:
        stats.increment("backend_errors")
