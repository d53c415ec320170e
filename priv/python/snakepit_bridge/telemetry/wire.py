"""Protobuf wire encoding of telemetry events, written by hand for speed.

:class:`~.stream.TelemetryStream` keeps events as plain tuples
``(name, measurements, metadata, timestamp_ns, correlation_id)`` and turns them
into ``snakepit.bridge.TelemetryEvent`` / ``TelemetryEventBatch`` bytes here, on
the stream's side. Building the messages with the protobuf runtime
(``TelemetryEvent(event_parts=..., measurements={k: TelemetryValue(...)}, ...)``,
then ``SerializeToString``) costs about 8 µs per event on the (slow) development
machine, too much for the 150k events/s a worker must push; this encoder writes
the same messages in about 1.6 µs, mostly from caches and lookup tables (see
``bench/emit_bench.py``, cases ``encode_wire`` / ``encode_protobuf``). The worker
hands the bytes to gRPC as they are (``grpc_server.add_bridge_service`` registers
a pass-through serializer for the streaming RPCs).

Mapping (``priv/proto/snakepit_bridge.proto``):

* ``event_parts`` (1): ``name.split(".")``;
* ``measurements`` (2): an ``int`` in the int64 range -> ``int_value``, a larger
  ``int`` -> ``float_value``, a ``float`` -> ``float_value``, a ``str`` ->
  ``string_value`` (the public ``emit`` never passes one: it coerces measurements
  to numbers first); anything else is left out (and counted by the caller);
* ``metadata`` (3): ``str`` values as they are, other values as
  :func:`.text.metadata_text` makes them (``True`` -> ``"true"``);
* ``timestamp_ns`` (4), ``correlation_id`` (5, left out when empty or ``None``).

Strings are encoded as UTF-8 with lone surrogates replaced by ``?`` (protobuf
``string`` fields must be valid UTF-8; the receiver would reject the whole
frame otherwise). Map entries are written in the dict's order. The bytes parse
to messages equal to those the protobuf runtime would build
(``tests/test_telemetry_wire.py`` checks that), though they are not always
byte-identical to its output (e.g. field order).

Caches: the encoded form of event names, measurement keys, metadata
``(key, value)`` pairs and correlation ids is kept in dicts, each cleared when
it reaches ``cache_limit`` entries (short strings only). Varints below 2**28
(timestamps' low bits, most measurement values) come from two tables of the
2**14 two-byte groups (about 1.5 MB, built once per process on first use, in
about 10 ms). An
encoder is not thread-safe: one stream's consumer uses it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from .text import metadata_text

__all__ = ["BATCH_TOTAL_TAGS", "NATIVE", "EventEncoder", "Event", "varint"]

#: Version of the mapping below; the native encoder is used only when it
#: writes the same one (a library built from other sources is ignored).
WIRE_VERSION = 1


_log = logging.getLogger(__name__)


def _load_native() -> tuple[Any, tuple[type[BaseException], ...]]:
    """``(encode, what a call of it can raise)`` of the Rust encoder
    (``_speedups``) when it is built, of this mapping's version, and not
    turned off with ``SNAKEPIT_BRIDGE_PURE_PYTHON=1``; else ``(None, ...)``.
    A call can raise any ``Exception`` and, should it ever panic, pyo3's
    ``PanicException`` (a ``BaseException``)."""
    if os.environ.get("SNAKEPIT_BRIDGE_PURE_PYTHON", "") not in ("", "0"):
        return None, (Exception,)
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None, (Exception,)
    if getattr(_speedups, "WIRE_VERSION", None) != WIRE_VERSION:
        _log.warning(
            "snakepit_bridge.telemetry._speedups is of another wire version (a stale build?): "
            "ignored, the pure-Python encoder is used"
        )
        return None, (Exception,)
    return _speedups.encode, (Exception, getattr(_speedups, "PanicException", Exception))


def _native_encoder() -> Any:
    """The native ``encode``, or ``None`` (see :func:`_load_native`)."""
    return _load_native()[0]


#: ``encode(events, framed)`` of the native encoder, or ``None`` (see
#: :func:`_load_native`). It answers ``None`` for a batch it does not
#: take (anything but exact ``str``/``int``/``float`` values); the Python
#: encoder then encodes it.
NATIVE, _NATIVE_FAILURES = _load_native()

#: One event as queued by the stream.
Event = tuple[str, dict, dict, int, "str | None"]

_SMALL = tuple(bytes((i,)) for i in range(128))
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_TWO_64 = 1 << 64
_pack_double = struct.Struct("<d").pack

#: Field tags of the running totals of ``TelemetryEventBatch`` (fields 2..6,
#: varint), of ``source_id`` (field 7), which names whose totals they are, and
#: of ``auth_rejected_total`` (field 8: calls refused for a missing token).
BATCH_TOTAL_TAGS = {
    "dropped_total": b"\x10",
    "emitted_total": b"\x18",
    "sampled_out_total": b"\x20",
    "filtered_out_total": b"\x28",
    "disabled_total": b"\x30",
    "source_id": b"\x38",
    "auth_rejected_total": b"\x40",
}

# Strings longer than this (encoded) are encoded every time instead of cached.
_CACHE_MAX_BYTES = 256


# _CONT[v]: the two 7-bit groups of v (< 2**14), both with the continuation bit;
# _END[v]: the varint of v (128 <= v < 2**14), i.e. no continuation on the last byte.
_CONT: tuple[bytes, ...] = ()
_END: tuple[bytes, ...] = ()


# _FRAME[n]: the tag and length of a batch's event field for an n-byte event.
_FRAME: tuple[bytes, ...] = ()
_FRAME_LIMIT = 0x800


def _tables() -> None:
    global _CONT, _END, _FRAME
    if not _CONT:
        _END = tuple(bytes((v & 0x7F | 0x80, v >> 7)) for v in range(0x4000))
        _CONT = tuple(bytes((v & 0x7F | 0x80, v >> 7 | 0x80)) for v in range(0x4000))
        _FRAME = tuple(b"\x0a" + varint(n) for n in range(_FRAME_LIMIT))


def varint(value: int) -> bytes:
    """The base-128 varint of a non-negative ``value`` (< 2**64)."""
    if value < 0x80:
        return _SMALL[value]
    _tables()
    if value < 0x4000:
        return _END[value]
    if value < 0x200000:
        return _CONT[value & 0x3FFF] + _SMALL[value >> 14]
    if value < 0x10000000:
        return _CONT[value & 0x3FFF] + _END[value >> 14]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _utf8(text: Any) -> bytes:
    if type(text) is not str:
        text = metadata_text(text)
    return text.encode("utf-8", "replace")


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


def _name_bytes(name: str) -> bytes:
    return b"".join(_field(b"\x0a", _utf8(part)) for part in name.split("."))


def _key_prefixes(key: Any) -> tuple[bytes, ...]:
    """For a measurement key: at index ``n`` (1..10) the bytes that precede an
    int value whose varint has ``n`` bytes, at :data:`_DOUBLE` the bytes that
    precede a double, at :data:`_KEY` the encoded key alone (for string values)."""
    k = _field(b"\x0a", _utf8(key))
    # entry = key + value field (0x12, len, TelemetryValue{0x08 varint | 0x11 double})
    ints = tuple(
        b"\x12" + varint(len(k) + 3 + n) + k + b"\x12" + _SMALL[n + 1] + b"\x08" if n else b""
        for n in range(11)
    )
    double = b"\x12" + varint(len(k) + 11) + k + b"\x12\x09\x11"
    return (*ints, double, k)


_DOUBLE = 11
_KEY = 12


def _plain(event: Sequence[Any]) -> tuple[str, dict, dict, int, str | None]:
    name, measurements, metadata, timestamp_ns, correlation_id = event
    return (
        str(name),
        {str(k): v for k, v in dict(measurements).items() if type(v) in (int, float, bool, str)},
        {str(k): metadata_text(v) for k, v in dict(metadata).items() if v is not None},
        int(timestamp_ns),
        None if correlation_id is None else str(correlation_id),
    )


class EventEncoder:
    """Encodes queued event tuples as ``TelemetryEvent`` / ``TelemetryEventBatch``."""

    __slots__ = (
        "_cid",
        "_keys",
        "_limit",
        "_meta",
        "_names",
        "_native",
        "_ts_high",
        "_ts_high_bytes",
    )

    def __init__(self, cache_limit: int = 4096, *, native: bool = True) -> None:
        """``native``: try :data:`NATIVE` first (when there is one)."""
        self._native = NATIVE if native else None
        self._limit = cache_limit
        self._names: dict[str, bytes] = {}
        self._keys: dict[Any, tuple[bytes, ...]] = {}
        self._meta: dict[tuple[Any, Any], bytes] = {}
        self._cid: dict[str, bytes] = {}
        self._ts_high = -1
        self._ts_high_bytes = b""

    # --- events and batches ------------------------------------------------

    def event(self, event: Sequence[Any]) -> bytes:
        """The serialized ``TelemetryEvent`` of one queued tuple."""
        return self.encode([event], framed=False)[0]

    def batch(
        self,
        events: Iterable[Sequence[Any]],
        totals: Iterable[tuple[bytes, int]] = (),
    ) -> bytes:
        """A serialized ``TelemetryEventBatch`` of ``events`` and the given
        ``(tag, value)`` totals (see :data:`BATCH_TOTAL_TAGS`; zeros left out)."""
        out = self.encode(events, framed=True)
        out.extend(self.totals(totals))
        return b"".join(out)

    def encode_safe(
        self, events: Sequence[Sequence[Any]], framed: bool
    ) -> tuple[list[bytes], Sequence[Sequence[Any]], int]:
        """:meth:`encode` that never raises: ``(pieces, events encoded, failures)``.

        If the fast path fails (a value no caller of the public ``emit`` can
        produce, e.g. an unhashable metadata value), each event is encoded on
        its own, once more with every value made plain if needed, and an event
        that still fails is left out and counted."""
        try:
            return self.encode(events, framed), events, 0
        except Exception:
            pass
        pieces: list[bytes] = []
        kept = []
        failed = 0
        for event in events:
            try:
                encoded = self.encode([event], framed)
            except Exception:
                try:
                    encoded = self.encode([_plain(event)], framed)
                except Exception:
                    failed += 1
                    continue
            pieces.extend(encoded)
            kept.append(event)
        return pieces, kept, failed

    def encode(self, events: Iterable[Sequence[Any]], framed: bool) -> list[bytes]:
        """Encodes every event: a list of ``TelemetryEvent`` bodies, or with
        ``framed`` of the elements of a ``TelemetryEventBatch``'s ``events``
        field (tag and length, then the body), one piece per event. The
        native encoder takes a list of the values ``telemetry.emit`` queues;
        this class encodes the rest."""
        native = self._native
        if native is not None and type(events) is list:
            try:
                out = native(events, framed)
            except _NATIVE_FAILURES:
                # A bug of the library, not of the events: this encoder
                # stops using it, and the batch is encoded in Python.
                self._native = None
                _log.exception("the native telemetry encoder failed; using the Python one")
                out = None
            if out is not None:
                return out
        return self._encode(events, framed)

    def _encode(self, events: Iterable[Sequence[Any]], framed: bool) -> list[bytes]:
        """:meth:`encode` in Python: the hot loop of a stream without the
        native encoder, every common case inline."""
        out: list[bytes] = []
        out_append = out.append
        names = self._names
        keys = self._keys
        meta = self._meta
        cids = self._cid
        small = _SMALL
        _tables()
        cont = _CONT
        end = _END
        frames = _FRAME
        pack_double = _pack_double
        ts_high = self._ts_high
        ts_high_bytes = self._ts_high_bytes
        for name, measurements, metadata, timestamp_ns, correlation_id in events:
            encoded = names.get(name)
            if encoded is None:
                encoded = self._name(name)
            parts = [encoded]
            append = parts.append
            for key, value in measurements.items():
                prefixes = keys.get(key)
                if prefixes is None:
                    prefixes = self._key(key)
                kind = type(value)
                if kind is int and value >= 0:
                    if value < 0x80:
                        append(prefixes[1])
                        append(small[value])
                    elif value < 0x4000:
                        append(prefixes[2])
                        append(end[value])
                    elif value < 0x200000:
                        append(prefixes[3])
                        append(cont[value & 0x3FFF])
                        append(small[value >> 14])
                    elif value < 0x10000000:
                        append(prefixes[4])
                        append(cont[value & 0x3FFF])
                        append(end[value >> 14])
                    else:
                        append(self._other_measurement(prefixes, value))
                elif kind is float:
                    append(prefixes[11])  # _DOUBLE
                    append(pack_double(value))
                else:
                    append(self._other_measurement(prefixes, value))
            for item in metadata.items():
                encoded = meta.get(item)
                if encoded is None:
                    encoded = self._metadata(item)
                append(encoded)
            if timestamp_ns >= 0x10000000:
                # low 28 bits: four 7-bit groups with continuation bits; the rest
                # changes every 0.27 s and is encoded once
                high = timestamp_ns >> 28
                if high != ts_high:
                    ts_high = high
                    ts_high_bytes = varint(high)
                append(b"\x20")
                append(cont[timestamp_ns & 0x3FFF])
                append(cont[timestamp_ns >> 14 & 0x3FFF])
                append(ts_high_bytes)
            elif timestamp_ns:
                append(b"\x20" + self._int64(timestamp_ns))
            if correlation_id:
                encoded = cids.get(correlation_id)
                if encoded is None:
                    encoded = self._correlation_id(correlation_id)
                append(encoded)
            body = b"".join(parts)
            if framed:
                size = len(body)
                body = (frames[size] if size < _FRAME_LIMIT else b"\x0a" + varint(size)) + body
            out_append(body)
        self._ts_high = ts_high
        self._ts_high_bytes = ts_high_bytes
        return out

    @staticmethod
    def totals(totals: Iterable[tuple[bytes, int]]) -> list[bytes]:
        """The encoded ``(tag, value)`` totals of a batch (zeros left out)."""
        return [tag + varint(value) for tag, value in totals if value]

    @staticmethod
    def framed(body: bytes) -> bytes:
        """``body`` (an encoded event) as one element of ``TelemetryEventBatch.events``."""
        return b"\x0a" + varint(len(body)) + body

    # --- cache misses and rare values ----------------------------------------

    def _name(self, name: str) -> bytes:
        encoded = _name_bytes(name)
        self._store(self._names, name, encoded)
        return encoded

    def _key(self, key: Any) -> tuple[bytes, ...]:
        prefixes = _key_prefixes(key)
        self._store(self._keys, key, prefixes, len(prefixes[_KEY]))
        return prefixes

    def _metadata(self, item: tuple[Any, Any]) -> bytes:
        key, value = item
        entry = _field(b"\x0a", _utf8(key)) + _field(b"\x12", _utf8(value))
        encoded = _field(b"\x1a", entry)
        self._store(self._meta, item, encoded)
        return encoded

    def _correlation_id(self, correlation_id: Any) -> bytes:
        encoded = _field(b"\x2a", _utf8(correlation_id))
        if type(correlation_id) is str:
            self._store(self._cid, correlation_id, encoded)
        return encoded

    def _store(self, cache: dict, key: Any, value: Any, size: int | None = None) -> None:
        if (len(value) if size is None else size) > _CACHE_MAX_BYTES:
            return
        if len(cache) >= self._limit:
            cache.clear()
        cache[key] = value

    @staticmethod
    def _int64(value: int) -> bytes:
        return varint(value if value >= 0 else value + _TWO_64)

    def _other_measurement(self, prefixes: tuple[bytes, ...], value: Any) -> bytes:
        kind = type(value)
        if kind is bool or kind is not int and isinstance(value, int):
            value = int(value)
        elif kind is str:
            payload = _field(b"\x1a", _utf8(value))
            entry = prefixes[_KEY] + _field(b"\x12", payload)
            return _field(b"\x12", entry)
        elif kind is not int:
            try:
                number = float(value)
            except Exception:
                return b""
            return prefixes[_DOUBLE] + _pack_double(number)
        if _INT64_MIN <= value <= _INT64_MAX:
            encoded = self._int64(value)
            return prefixes[len(encoded)] + encoded
        try:
            number = float(value)
        except OverflowError:
            return b""
        return prefixes[_DOUBLE] + _pack_double(number)
