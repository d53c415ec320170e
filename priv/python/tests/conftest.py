"""Shared fixtures: a recording backend, and isolation of the global backend."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snakepit_bridge import telemetry
from snakepit_bridge.telemetry import TelemetryBackend

#: priv/python, the folder that must be on PYTHONPATH.
PYTHON_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Recorded:
    """One event as a backend received it (dicts copied at emit time)."""

    event: str
    measurements: dict[str, int | float]
    metadata: dict[str, str]
    correlation_id: str | None


class RecordingBackend(TelemetryBackend):
    """Keeps every event in memory, in order; thread-safe."""

    def __init__(self) -> None:
        self.events: list[Recorded] = []
        self.closed = 0
        self._lock = threading.Lock()

    def emit(self, event_name, measurements, metadata, correlation_id):  # type: ignore[override]
        record = Recorded(event_name, dict(measurements), dict(metadata), correlation_id)
        with self._lock:
            self.events.append(record)

    def close(self) -> None:
        self.closed += 1

    def names(self) -> list[str]:
        return [e.event for e in self.events]

    def one(self, name: str) -> Recorded:
        found = [e for e in self.events if e.event == name]
        assert len(found) == 1, f"expected one {name!r}, got {self.names()}"
        return found[0]


@pytest.fixture(autouse=True)
def _restore_backend() -> Iterator[None]:
    """Every test leaves the process-wide backend as it found it."""
    previous = telemetry.get_backend()
    yield
    telemetry.set_backend(previous)


@pytest.fixture
def recorder() -> RecordingBackend:
    """A fresh RecordingBackend, installed as the active backend."""
    backend = RecordingBackend()
    telemetry.set_backend(backend)
    return backend


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """The current environment without Python/telemetry settings, plus ``extra``
    (a value of None removes the variable)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHON_SNAKEPIT_TELEMETRY", "SNAKEPIT_TELEMETRY_CATALOG")
    }
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (the project's venv under `make test`)."""
    return sys.executable
