"""Turns caller-supplied measurements and metadata into wire-ready values.

Rules (the contract every backend and the BEAM side rely on):

Measurements -> ``dict[str, int | float]``
    * ``int`` and finite ``float`` values are kept as they are;
    * ``bool`` becomes ``0``/``1``;
    * other real numbers (``numbers.Real``, e.g. numpy scalars) become ``int``
      when integral (``numbers.Integral``), else ``float``;
    * an ASCII string that parses as a number (after stripping spaces, tabs,
      CR and LF; no ``_`` digit separators) becomes that number: ``int`` if
      ``int()`` accepts it and it fits in int64, else ``float`` (``"12"`` -> 12,
      ``"1.5e3"`` -> 1500.0);
    * anything else -- ``None``, other strings, containers, objects, and
      non-finite floats (NaN and infinities, which JSON cannot carry and the
      receiver rejects) -- is left out of the event and counted in
      ``dropped_measurements``. The rest of the event is still emitted.

Metadata -> ``dict[str, str]``
    * ``str`` values are kept; every other value becomes its text by
      :func:`.text.metadata_text` (``True`` -> ``"true"``, ``3`` -> ``"3"``,
      ``1e20`` -> ``"1e+20"``);
    * ``None`` values are left out silently (not counted);
    * an entry whose ``str()`` raises is left out and counted in
      ``dropped_metadata``.

Keys must be strings. Only values are checked on the fast path (keys are not,
to keep ``emit`` cheap): when some value needs coercion, every key also becomes
``str(key)``; otherwise a non-string key reaches the backend as is, and the
backend may drop the event and count it (``StderrBackend`` writes int/float/bool
keys as JSON strings and counts other key types in ``encode_errors``).

A ``None`` argument means "empty"; any other argument that is not a mapping is
treated as empty and counted once.

Cost: when every value already has its final type (``int``/finite ``float``
measurements, ``str`` metadata) the caller's own dict is returned unchanged --
no copy is made. Backends must therefore treat what they receive as read-only,
and copy it if they keep it past their ``emit`` call. Lengths and counts are
*not* checked here; the receiver validates against the catalog limits.

Every rule here is a row of ``priv/catalog/value_rules.json``, the table the
Rust and Elixir sides are tested against too.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from . import stats
from .text import metadata_text

__all__ = ["coerce_measurements", "coerce_metadata", "coerce_number"]


def coerce_measurements(measurements: Mapping[Any, Any] | None) -> dict[str, int | float]:
    """Applies the measurement rules above; never raises."""
    if type(measurements) is dict:
        for value in measurements.values():
            # `value - value != 0.0` is True exactly for NaN and the infinities.
            if type(value) is not int and (type(value) is not float or value - value != 0.0):
                return _measurements_slow(measurements)
        return measurements
    return _measurements_slow(measurements)


def coerce_metadata(metadata: Mapping[Any, Any] | None) -> dict[str, str]:
    """Applies the metadata rules above; never raises."""
    if type(metadata) is dict:
        for value in metadata.values():
            if type(value) is not str:
                return _metadata_slow(metadata)
        return metadata
    if metadata is None:
        return {}
    return _metadata_slow(metadata)


def coerce_number(value: Any) -> int | float | None:
    """One measurement value by the rules above; ``None`` means "drop it"."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        return value if value - value == 0.0 else None
    if kind is str:
        return _parse_number(value)
    if kind is bool:
        return int(value)
    try:
        if isinstance(value, numbers.Integral):  # bool, IntEnum, numpy integers
            return int(value)
        if isinstance(value, numbers.Real):  # float subclasses, numpy floats, Fraction
            number = float(value)
            return number if number - number == 0.0 else None
    except Exception:
        return None
    return None


_INT64 = range(-(1 << 63), 1 << 63)


def _parse_number(text: str) -> int | float | None:
    # int() and float() also take "1_000", non-ASCII digits and Unicode
    # spaces, which the other languages do not: the table says no.
    text = text.strip(" \t\r\n")
    if not text.isascii() or "_" in text:
        return None
    try:
        number = int(text)
        if number in _INT64:
            return number
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number - number == 0.0 else None


def _items(mapping: Any, counter: str) -> list[tuple[Any, Any]]:
    if mapping is None:
        return []
    try:
        return list(mapping.items())
    except Exception:
        stats.increment(counter)
        return []


def _measurements_slow(measurements: Any) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    dropped = 0
    for key, value in _items(measurements, "dropped_measurements"):
        number = coerce_number(value)
        if number is None:
            dropped += 1
            continue
        try:
            out[key if type(key) is str else str(key)] = number
        except Exception:
            dropped += 1
    if dropped:
        stats.increment("dropped_measurements", dropped)
    return out


def _metadata_slow(metadata: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    dropped = 0
    for key, value in _items(metadata, "dropped_metadata"):
        if value is None:
            continue
        try:
            out[key if type(key) is str else str(key)] = metadata_text(value)
        except Exception:
            dropped += 1
    if dropped:
        stats.increment("dropped_metadata", dropped)
    return out
