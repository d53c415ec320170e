"""requirements-lowest.txt (what scripts/test_python_lowest.sh tests) pins
exactly the lower bounds that requirements.txt and requirements-dev.txt state."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import PYTHON_ROOT

_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)\s*([=<>!~][^#]*?)\s*(?:#.*)?$")


def specs(path: Path) -> dict[str, str]:
    """Package name -> its version specifier, of the file's own lines."""
    found = {}
    for line in path.read_text("utf-8").splitlines():
        match = _LINE.match(line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2).replace(" ", "")
    return found


def release(text: str) -> tuple[int, ...]:
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def lower_bound(spec: str) -> str:
    found = re.search(r">=([0-9.]+)", spec)
    assert found, f"{spec!r} states no lower bound"
    return found.group(1)


def test_lowest_pins_are_the_lower_bounds() -> None:
    lowest = specs(PYTHON_ROOT / "requirements-lowest.txt")
    runtime = specs(PYTHON_ROOT / "requirements.txt")
    dev = specs(PYTHON_ROOT / "requirements-dev.txt")
    assert set(runtime) == {"grpcio", "protobuf", "psutil"}
    tools = ("pytest", "opentelemetry-api", "opentelemetry-sdk")
    tested = {**runtime, **{name: dev[name] for name in tools}}
    assert set(lowest) == set(tested)
    for name, spec in tested.items():
        pin = lowest[name]
        assert pin.startswith("=="), f"{name}: {pin} is not an exact pin"
        assert release(pin[2:]) == release(lower_bound(spec)), f"{name}: {pin} vs {spec}"
