"""Counters of what the telemetry helpers dropped or could not deliver.

Counts only grow, from import on, per process. They are incremented only on
rare paths (a dropped value, a failing backend), so each increment takes a lock
and no count is ever lost between threads.
"""

from __future__ import annotations

import threading

__all__ = ["COUNTER_NAMES", "increment", "snapshot"]

#: Every counter, in a stable order.
COUNTER_NAMES = (
    # measurement values that were not numbers (or not finite) and were left out
    "dropped_measurements",
    # metadata entries whose key or value could not be turned into a string
    "dropped_metadata",
    # calls where the backend raised (the event is lost; the caller never sees it)
    "backend_errors",
)

_lock = threading.Lock()
_counts = dict.fromkeys(COUNTER_NAMES, 0)


def increment(name: str, by: int = 1) -> None:
    """Adds ``by`` to the counter ``name`` (one of :data:`COUNTER_NAMES`)."""
    with _lock:
        _counts[name] += by


def snapshot() -> dict[str, int]:
    """A copy of all counters, ``{name: count}``, consistent at one instant."""
    with _lock:
        return dict(_counts)
