"""The stderr fallback backend: one ``TELEMETRY:{json}`` line per event.

Line format (what ``Snakepit.Telemetry.PythonCapture`` and the Rust line parser
read)::

    TELEMETRY:{"event":"tool.execution.stop","measurements":{"duration":1500},"metadata":{"tool":"predict"},"timestamp_ns":1700000000000000000,"correlation_id":"req-1"}

* exactly one line per event, terminated by ``\\n``; newlines inside values are
  JSON-escaped, so a line never breaks;
* the JSON object has exactly the keys ``event`` (string), ``measurements``
  (object of numbers), ``metadata`` (object of strings), ``timestamp_ns``
  (integer, unix epoch nanoseconds from ``time.time_ns()`` at emit) and
  ``correlation_id`` (string or ``null``);
* compact separators, ASCII only (non-ASCII text is ``\\uXXXX``-escaped), no
  ``NaN``/``Infinity`` (an event that would need them is not written);
* each line is written and flushed under a lock, so lines from many threads never
  interleave.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from .base import TelemetryBackend

__all__ = ["PREFIX", "StderrBackend"]

#: Every telemetry line starts with this marker.
PREFIX = "TELEMETRY:"

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class StderrBackend(TelemetryBackend):
    """Writes each event as a ``TELEMETRY:{json}`` line.

    ``stream`` is any text stream; ``None`` (the default) means whatever
    ``sys.stderr`` is at the time of each emit, so redirections made later are
    followed. Failures never reach the caller: an event that cannot be encoded
    is counted in ``encode_errors``, one that cannot be written or flushed (closed
    or broken stream, no ``sys.stderr``) in ``write_errors``.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._written = 0
        self._encode_errors = 0
        self._write_errors = 0

    def emit(
        self,
        event_name: str,
        measurements: dict[str, int | float],
        metadata: dict[str, str],
        correlation_id: str | None,
    ) -> None:
        """Writes one line and flushes; never raises."""
        payload = {
            "event": event_name,
            "measurements": measurements,
            "metadata": metadata,
            "timestamp_ns": time.time_ns(),
            "correlation_id": correlation_id,
        }
        try:
            line = PREFIX + _encode(payload) + "\n"
        except Exception:
            with self._lock:
                self._encode_errors += 1
            return
        with self._lock:
            stream = sys.stderr if self._stream is None else self._stream
            try:
                stream.write(line)
                stream.flush()
            except Exception:
                self._write_errors += 1
            else:
                self._written += 1

    def stats(self) -> dict[str, int]:
        """``{"written": n, "encode_errors": n, "write_errors": n}`` since creation."""
        with self._lock:
            return {
                "written": self._written,
                "encode_errors": self._encode_errors,
                "write_errors": self._write_errors,
            }
