"""The interface every telemetry backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["TelemetryBackend"]


class TelemetryBackend(ABC):
    """Carries events from :func:`snakepit_bridge.telemetry.emit` to Elixir.

    What a backend can rely on when ``emit`` is called through the public API:

    * ``measurements`` is a ``dict[str, int | float]`` with finite floats only,
      ``metadata`` a ``dict[str, str]`` (see :mod:`..coerce` for the rules);
    * ``correlation_id`` is the explicit id, else the current context's, else ``None``;
    * the event name and the sizes are *not* validated (the receiver does that).

    What a backend must honour:

    * ``emit`` runs on the caller's thread, in hot paths: it must be quick and
      must not block (queue, drop and count instead);
    * the dicts may be the caller's own objects: never mutate them, and copy
      them if they are kept after ``emit`` returns;
    * ``emit`` may be called from many threads at once;
    * ``emit`` should not raise; if it does, the public ``emit`` swallows the
      error and counts it in ``backend_errors``.
    """

    @abstractmethod
    def emit(
        self,
        event_name: str,
        measurements: dict[str, int | float],
        metadata: dict[str, str],
        correlation_id: str | None,
    ) -> None:
        """Sends (or queues) one event."""

    def close(self) -> None:  # noqa: B027 -- optional hook; most backends hold nothing
        """Releases what the backend holds. Idempotent. The default does nothing."""

    def stats(self) -> dict[str, int]:
        """The backend's own counters (events written, dropped, failed...).

        The default has none."""
        return {}
