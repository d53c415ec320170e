"""The stream side of a :class:`~.stream.TelemetryStream`'s buffer: takes
buffered events and makes them frames within the receiver's limits, with
the accounting (``taken``, ``dropped``) under the stream's lock.

* :meth:`Frames.batch` -- one ``TelemetryEventBatch`` of up to ``max_batch``
  events and about ``max_batch_bytes``, plus the running totals;
* :meth:`Frames.events` -- ``TelemetryEvent`` bodies for the stock RPC.

Events that do not fit in this frame wait in ``carry`` for the next one (in
order, ahead of the buffer); an event too large for any frame, or one the
encoder cannot encode, is dropped, counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .wire import EventEncoder

__all__ = ["BATCH_OVERHEAD", "Frames"]

_log = logging.getLogger(__name__)

#: Bytes of a batch besides its events (totals and source id: at most 7 x 11 bytes).
BATCH_OVERHEAD = 96

Item = tuple[str, dict, dict, int, "str | None"]


class _Buffered(Protocol):
    """What Frames needs of the stream: its buffer, lock and counters."""

    _buffer: Any
    _lock: Any
    _counts: dict[str, int]


class Frames:
    """Frames from ``owner``'s buffer (see the module docs)."""

    __slots__ = ("_encoder", "_owner", "carry", "max_batch_bytes", "max_frame_bytes")

    def __init__(self, owner: _Buffered, max_frame_bytes: int, max_batch_bytes: int) -> None:
        self._owner = owner
        self._encoder = EventEncoder()
        self.max_frame_bytes = max_frame_bytes
        self.max_batch_bytes = max_batch_bytes
        #: Taken events given back (they did not fit in a frame): sent first.
        self.carry: list[Item] = []

    def batch(self, max_batch: int, totals: Callable[[], Any]) -> tuple[bytes, int, Any]:
        """``(frame bytes, event count, the totals it carries)``; ``(b"", 0,
        None)`` when nothing is buffered."""
        items = self._take(max_batch)
        if not items:
            return b"", 0, None
        pieces, items, failed = self._encoder.encode_safe(items, framed=True)
        if failed:
            self._lost_to_encoding(failed)
        budget = self.max_batch_bytes - BATCH_OVERHEAD
        if sum(map(len, pieces)) > budget:
            pieces, items = self._fit(pieces, items, budget)
        if not items:
            return b"", 0, None
        running = totals()
        pieces.extend(EventEncoder.totals(running))
        return b"".join(pieces), len(items), running

    def events(self, limit: int) -> list[bytes]:
        """Up to ``limit`` event bodies for the stock RPC (one message each)."""
        items = self._take(limit)
        if not items:
            return []
        bodies, _, failed = self._encoder.encode_safe(items, framed=False)
        if failed:
            self._lost_to_encoding(failed)
        if not bodies:
            return []
        too_big = self.max_frame_bytes - 16
        if max(map(len, bodies)) > too_big:
            kept = [b for b in bodies if len(b) <= too_big]
            self._drop(len(bodies) - len(kept))
            bodies = kept
        return bodies

    def _take(self, limit: int) -> list[Item]:
        owner = self._owner
        with owner._lock:
            items = self.carry
            self.carry = []
            buffer = owner._buffer
            popleft = buffer.popleft
            items += [popleft() for _ in range(min(limit - len(items), len(buffer)))]
            owner._counts["taken"] += len(items)
        return items

    def _give_back(self, items: list[Item]) -> None:
        with self._owner._lock:
            self.carry = items + self.carry
            self._owner._counts["taken"] -= len(items)

    def _drop(self, n: int) -> None:
        """``n`` taken events will never be sent."""
        with self._owner._lock:
            self._owner._counts["dropped"] += n
            self._owner._counts["taken"] -= n

    def _lost_to_encoding(self, failed: int) -> None:
        self._drop(failed)
        _log.warning("%d telemetry event(s) could not be encoded and were dropped", failed)

    def _fit(
        self, pieces: list[bytes], items: list[Any], budget: int
    ) -> tuple[list[bytes], list[Any]]:
        """Cuts an over-large batch: keeps a prefix that fits (at least one event
        if it fits in a frame), gives the rest back, drops a lone event too big
        for any frame."""
        size = 0
        for index in range(len(items)):
            event_size = len(pieces[index])
            if size + event_size > budget and index > 0:
                self._give_back(items[index:])
                return pieces[:index], items[:index]
            if event_size > self.max_frame_bytes - BATCH_OVERHEAD:
                # Alone it would still break the receiver's frame limit.
                self._give_back(items[index + 1 :])
                self._drop(1)
                _log.warning(
                    "telemetry event %r too large (%d bytes) dropped", items[index][0], event_size
                )
                return pieces[:index], items[:index]
            size += event_size
        return pieces, items
