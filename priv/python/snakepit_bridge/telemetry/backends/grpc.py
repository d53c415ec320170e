"""The gRPC backend: events go to a :class:`~..stream.TelemetryStream`, which the
worker's ``StreamTelemetry`` / ``StreamTelemetryBatched`` RPCs drain to Elixir.

::

    stream = TelemetryStream()
    telemetry.set_backend(GrpcBackend(stream))

``grpc_server.py`` does this at start-up (``PYTHON_SNAKEPIT_TELEMETRY=grpc`` or
unset). The backend adds nothing on the hot path: its ``emit`` *is* the stream's
``emit`` (bound on the instance), so a ``telemetry.emit`` call costs one call
less than a delegating method would.
"""

from __future__ import annotations

from ..stream import TelemetryStream
from .base import TelemetryBackend

__all__ = ["GrpcBackend"]


class GrpcBackend(TelemetryBackend):
    """Feeds :func:`snakepit_bridge.telemetry.emit` into ``stream``."""

    def __init__(self, stream: TelemetryStream) -> None:
        self.stream = stream
        # Shadows the method below: one Python frame less per event.
        self.emit = stream.emit  # type: ignore[method-assign]

    def emit(
        self,
        event_name: str,
        measurements: dict[str, int | float],
        metadata: dict[str, str],
        correlation_id: str | None,
    ) -> None:
        """Queues the event on the stream (see :meth:`TelemetryStream.emit`)."""
        self.stream.emit(event_name, measurements, metadata, correlation_id)

    def close(self) -> None:
        """Closes the stream: what is buffered is flushed to the attached RPC."""
        self.stream.close()

    def stats(self) -> dict[str, int]:
        """The stream's counters (see :meth:`TelemetryStream.stats`)."""
        return self.stream.stats()
