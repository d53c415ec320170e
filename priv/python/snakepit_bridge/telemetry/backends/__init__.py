"""Telemetry backends: where emitted events go.

* :class:`~.base.TelemetryBackend` -- the interface (``emit``, ``close``, ``stats``).
* :class:`~.stderr.StderrBackend` -- ``TELEMETRY:{json}`` lines on stderr, the
  fallback read by ``Snakepit.Telemetry.PythonCapture``.
* :class:`~.grpc.GrpcBackend` -- queues events on a
  :class:`~snakepit_bridge.telemetry.stream.TelemetryStream`, which the worker's
  ``StreamTelemetry`` / ``StreamTelemetryBatched`` RPCs drain (loaded on first use).
"""

from .base import TelemetryBackend
from .stderr import StderrBackend

__all__ = ["GrpcBackend", "StderrBackend", "TelemetryBackend"]


def __getattr__(name: str) -> object:
    if name == "GrpcBackend":
        from .grpc import GrpcBackend

        return GrpcBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
