"""Telemetry backends: where emitted events go.

* :class:`~.base.TelemetryBackend` -- the interface (``emit``, ``close``, ``stats``).
* :class:`~.stderr.StderrBackend` -- ``TELEMETRY:{json}`` lines on stderr, the
  fallback read by ``Snakepit.Telemetry.PythonCapture``.

A gRPC backend (``backends/grpc.py``, fed to the ``StreamTelemetry`` RPC) plugs in
through the same interface.
"""

from .base import TelemetryBackend
from .stderr import StderrBackend

__all__ = ["StderrBackend", "TelemetryBackend"]
