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
  interleave. A stream with a file under it (``sys.stderr``) is flushed, then
  the line goes to its file descriptor in one ``write`` (no copy through the
  text and buffer layers); others get ``write`` and ``flush``.

Encoding, fastest first: with the optional ``orjson`` package importable, the
line is its output (about 0.5 µs; numbers in the shortest form that reads back
exactly, e.g. ``1e16`` where ``json`` writes ``1e+16``); then a direct build of
what ``json`` would write, for the usual types; then ``json`` itself. Each
later path takes what an earlier one cannot do (non-ASCII text, non-string
keys, integers beyond 64 bits, ...), so the line is the same JSON value
whichever path wrote it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any, TextIO

from .base import TelemetryBackend

try:  # optional: the standard library does the same, about 2 µs slower per event
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = ["PREFIX", "StderrBackend"]

#: Every telemetry line starts with this marker.
PREFIX = "TELEMETRY:"

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_quote = json.encoder.encode_basestring_ascii  # the json module's own (C) escaping
_int_repr = int.__repr__
_float_repr = float.__repr__
_isfinite = math.isfinite


_PREFIX_BYTES = PREFIX.encode()


def _payload(
    event_name: Any, measurements: Any, metadata: Any, timestamp_ns: int, correlation_id: Any
) -> dict[str, Any]:
    """The line's JSON object, keys in the documented order."""
    return {
        "event": event_name,
        "measurements": measurements,
        "metadata": metadata,
        "timestamp_ns": timestamp_ns,
        "correlation_id": correlation_id,
    }


def _orjson_line(
    event_name: str,
    measurements: dict[Any, Any],
    metadata: dict[Any, Any],
    timestamp_ns: int,
    correlation_id: str | None,
) -> bytes | None:
    """The line by ``orjson``; ``None`` when it is not installed or cannot
    write this event as the contract says (orjson writes ``NaN`` as ``null``
    and non-ASCII text as UTF-8; it refuses non-string keys, big integers and
    lone surrogates)."""
    if _orjson is None:
        return None
    for value in measurements.values():
        if isinstance(value, float) and not _isfinite(value):
            return None
    for value in metadata.values():
        if type(value) is not str:  # what emit() passes; others: the json path
            return None
    payload = _payload(event_name, measurements, metadata, timestamp_ns, correlation_id)
    try:
        body = _orjson.dumps(payload, option=_orjson.OPT_APPEND_NEWLINE)
    except Exception:
        return None
    if not body.isascii():
        return None
    return _PREFIX_BYTES + body


def _fileno(stream: Any) -> int | None:
    """The stream's file descriptor; ``None`` when there is no file under it
    (StringIO, a test's capture)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _write(stream: Any, fd: int | None, line: bytes) -> None:
    """Writes one line (under the lock: a line longer than PIPE_BUF takes
    several write(2) calls on a full pipe, and must not be cut into)."""
    if fd is None:
        stream.write(line.decode("ascii"))
        # A line-buffered stream has flushed the line itself.
        if not getattr(stream, "line_buffering", False):
            stream.flush()
        return
    stream.flush()  # what the stream itself still holds goes first
    _write_all(fd, memoryview(line))


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _fast_line(
    event_name: str,
    measurements: dict[Any, Any],
    metadata: dict[Any, Any],
    timestamp_ns: int,
    correlation_id: str | None,
) -> str | None:
    """The line ``json`` would write, built directly for the usual types (str
    keys and names, int/float measurements, str metadata): the same escaping
    and number forms at about half the cost. ``None`` for anything else, which
    then takes the ``json`` path."""
    if type(event_name) is not str:
        return None
    parts = []
    for key, value in measurements.items():
        kind = type(value)
        if type(key) is not str:
            return None
        if kind is int:
            parts.append(_quote(key) + ":" + _int_repr(value))
        elif kind is float and _isfinite(value):
            parts.append(_quote(key) + ":" + _float_repr(value))
        else:
            return None
    meta = []
    for key, value in metadata.items():
        if type(key) is not str or type(value) is not str:
            return None
        meta.append(_quote(key) + ":" + _quote(value))
    if correlation_id is None:
        cid = "null"
    elif type(correlation_id) is str:
        cid = _quote(correlation_id)
    else:
        return None
    return (
        f'{PREFIX}{{"event":{_quote(event_name)},"measurements":{{{",".join(parts)}}},'
        f'"metadata":{{{",".join(meta)}}},"timestamp_ns":{timestamp_ns},'
        f'"correlation_id":{cid}}}\n'
    )


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
        # The last stream written to and its file descriptor (None: none).
        self._fd: tuple[Any, int | None] = (None, None)

    def emit(
        self,
        event_name: str,
        measurements: dict[str, int | float],
        metadata: dict[str, str],
        correlation_id: str | None,
    ) -> None:
        """Writes one line and flushes; never raises."""
        timestamp_ns = time.time_ns()
        line = _orjson_line(event_name, measurements, metadata, timestamp_ns, correlation_id)
        if line is None:
            text = _fast_line(event_name, measurements, metadata, timestamp_ns, correlation_id)
            if text is None:
                payload = _payload(event_name, measurements, metadata, timestamp_ns, correlation_id)
                try:
                    text = PREFIX + _encode(payload) + "\n"
                except Exception:
                    with self._lock:
                        self._encode_errors += 1
                    return
            line = text.encode("ascii")  # both paths escape everything else
        with self._lock:
            stream = sys.stderr if self._stream is None else self._stream
            try:
                cached, fd = self._fd
                if cached is not stream:
                    fd = _fileno(stream)
                    self._fd = (stream, fd)
                _write(stream, fd, line)
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
