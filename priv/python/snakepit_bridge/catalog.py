"""The shared telemetry event catalog, as Python sees it.

The catalog is one JSON file that Rust, Elixir and Python all read, so the three
cannot drift. This module loads it once, at import, from:

1. the path in the environment variable ``SNAKEPIT_TELEMETRY_CATALOG``, if set;
2. otherwise ``<priv>/catalog/telemetry_catalog.json``, where ``<priv>`` is the
   folder that holds ``python/snakepit_bridge`` (symlinks resolved).

A missing or malformed catalog raises :class:`CatalogError` at import: it is a
broken installation, not something to paper over.

Nothing here is on the telemetry hot path: ``emit`` never consults the catalog
(the receiving side validates). This module is for tooling, tests and for the
few limits the Python side applies itself.

Command line::

    python -m snakepit_bridge.catalog --summary

prints :func:`summary` as one line of compact JSON with sorted keys, the same
data Elixir (``Snakepit.Telemetry.Catalog.summary/0``) and Rust
(``Catalog::summary_json``) compute, so a test can compare the three.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_VAR",
    "CatalogError",
    "catalog_path",
    "elixir_event",
    "defaults",
    "limits",
    "main",
    "measurement_keys",
    "metadata_keys",
    "python_events",
    "summary",
]

#: Environment variable that overrides the catalog location.
ENV_VAR = "SNAKEPIT_TELEMETRY_CATALOG"


class CatalogError(RuntimeError):
    """The catalog file is missing, unreadable or not shaped as expected."""


def _default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "catalog" / "telemetry_catalog.json"


def _resolve_path() -> Path:
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else _default_path()


def _str_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogError(f"{what} must be a list of non-empty strings")
    return value


def _load(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(
            f"telemetry catalog not found at {path} (set {ENV_VAR} to override)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read telemetry catalog {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: the catalog must be a JSON object")

    events = raw.get("events")
    if not isinstance(events, list):
        raise CatalogError(f"{path}: 'events' must be a list")
    limits_ = raw.get("limits")
    if not isinstance(limits_, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in limits_.values()
    ):
        raise CatalogError(f"{path}: 'limits' must be an object of integers")

    dotted: list[str] = []
    python_map: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(events):
        if not isinstance(entry, dict):
            raise CatalogError(f"{path}: events[{i}] must be an object")
        parts = tuple(_str_list(entry.get("event"), f"{path}: events[{i}].event"))
        dotted.append(".".join(parts))
        py = entry.get("python_name")
        if py is None:
            continue
        if not isinstance(py, str) or not py:
            raise CatalogError(f"{path}: events[{i}].python_name must be a non-empty string")
        if py in python_map:
            raise CatalogError(f"{path}: python_name {py!r} appears twice")
        python_map[py] = parts

    measurement_keys = _str_list(raw.get("measurement_keys"), f"{path}: measurement_keys")
    metadata_keys = _str_list(raw.get("metadata_keys"), f"{path}: metadata_keys")
    defaults_ = raw.get("defaults")
    if not isinstance(defaults_, dict):
        raise CatalogError(f"{path}: 'defaults' must be an object of integers")
    defaults_ = {k: v for k, v in defaults_.items() if not k.startswith("_")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in defaults_.values()):
        raise CatalogError(f"{path}: 'defaults' must be an object of integers")

    return {
        "events": dotted,
        "python_map": python_map,
        "measurement_keys": measurement_keys,
        "metadata_keys": metadata_keys,
        "limits": dict(limits_),
        "defaults": defaults_,
    }


_PATH = _resolve_path()
_CATALOG = _load(_PATH)
_PYTHON_MAP: dict[str, tuple[str, ...]] = _CATALOG["python_map"]
_PYTHON_EVENTS = frozenset(_PYTHON_MAP)
_MEASUREMENT_KEYS = frozenset(_CATALOG["measurement_keys"])
_METADATA_KEYS = frozenset(_CATALOG["metadata_keys"])


def catalog_path() -> Path:
    """The file the catalog was loaded from (fixed at import)."""
    return _PATH


def python_events() -> frozenset[str]:
    """Every event name a Python worker may emit, e.g. ``"python.call.start"``,
    ``"tool.result_size"``. Events of other layers (pool, gRPC) are not included."""
    return _PYTHON_EVENTS


def elixir_event(python_name: str) -> tuple[str, ...] | None:
    """The Elixir event a Python name maps to, as strings, e.g.
    ``elixir_event("tool.result_size") == ("snakepit", "python", "tool", "result_size")``;
    ``None`` for a name that is not in the catalog."""
    return _PYTHON_MAP.get(python_name)


def measurement_keys() -> frozenset[str]:
    """Measurement keys the BEAM side turns into atoms (others stay strings)."""
    return _MEASUREMENT_KEYS


def metadata_keys() -> frozenset[str]:
    """Metadata keys the BEAM side turns into atoms (others stay strings)."""
    return _METADATA_KEYS


def defaults() -> dict[str, int]:
    """Defaults both ends of a worker's connection agree on (``max_frame_bytes``,
    ``max_batch_events``, ``max_delay_ms``, ``tool_timeout_ms``)."""
    return dict(_CATALOG["defaults"])


def limits() -> dict[str, int]:
    """The receiver's input limits (e.g. ``max_metadata_value_bytes``).

    Returns a fresh copy on every call; changing it changes nothing else."""
    return dict(_CATALOG["limits"])


def summary() -> dict[str, list[str]]:
    """The canonical, JSON-able summary that Elixir and Rust compute too.

    ``{"events": dotted Elixir names of all catalog events,
    "python_map": ["python_name=>dotted.elixir.name", ...],
    "measurement_keys": [...], "metadata_keys": [...]}``; every list is sorted
    (code point order, which equals the byte order Rust and Elixir sort by) and
    keeps duplicates, exactly like the other two implementations."""
    return {
        "events": sorted(_CATALOG["events"]),
        "python_map": sorted(f"{py}=>{'.'.join(parts)}" for py, parts in _PYTHON_MAP.items()),
        "measurement_keys": sorted(_CATALOG["measurement_keys"]),
        "metadata_keys": sorted(_CATALOG["metadata_keys"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m snakepit_bridge.catalog",
        description="Inspect the shared Snakepit telemetry catalog.",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print the canonical summary as one line of compact, key-sorted JSON",
    )
    args = parser.parse_args(argv)
    if not args.summary:
        parser.print_usage(sys.stderr)
        return 2
    print(json.dumps(summary(), sort_keys=True, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
