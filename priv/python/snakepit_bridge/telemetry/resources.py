"""Resource telemetry of the worker process itself.

* ``python.memory.sampled`` {rss_bytes, vms_bytes, system_time} and
  ``python.cpu.sampled`` {cpu_percent, system_time}, from psutil, every
  ``interval_s`` seconds on a daemon thread;
* ``python.gc.completed`` {duration (ns), collected, generation, count} from
  :data:`gc.callbacks`. Young-generation collections can run thousands of
  times a second under allocation-heavy load, so per generation at most one
  event per ``min_interval_s`` is sent; it sums the collections since the last
  one (``count`` says how many, ``duration`` and ``collected`` are totals).

Both are off until started (``grpc_server.py --sample-interval-ms``) and stop
cleanly. Without psutil the sampler emits nothing and says so once.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from snakepit_bridge import telemetry

__all__ = ["GcTelemetry", "ResourceSampler"]

log = logging.getLogger(__name__)


class ResourceSampler:
    """Samples memory and CPU of this process on a daemon thread."""

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ResourceSampler:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a requirement
            log.warning("psutil is not installed: no memory/cpu telemetry")
            return self
        self._thread = threading.Thread(
            target=self._run, args=(psutil.Process(),), name="snakepit-resources", daemon=True
        )
        self._thread.start()
        return self

    def sample_once(self, process: Any) -> None:
        """Emits one memory and one CPU sample of ``process`` (a psutil.Process)."""
        now = time.time_ns()
        mem = process.memory_info()
        telemetry.emit(
            "python.memory.sampled",
            {"rss_bytes": mem.rss, "vms_bytes": mem.vms, "system_time": now},
        )
        # cpu_percent since the previous call (the first call primes it).
        telemetry.emit(
            "python.cpu.sampled", {"cpu_percent": process.cpu_percent(None), "system_time": now}
        )

    def _run(self, process: Any) -> None:
        process.cpu_percent(None)
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_once(process)
            except Exception:  # the process is going away; never crash the worker
                log.debug("resource sample failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class GcTelemetry:
    """Emits ``python.gc.completed``, summarised per generation."""

    def __init__(self, min_interval_s: float = 0.1) -> None:
        self._min_interval_ns = int(min_interval_s * 1e9)
        self._started: dict[int, int] = {}
        # generation -> [duration_ns, collected, count]
        self._pending: dict[int, list[int]] = {}
        # generation -> monotonic ns of its last event; absent = none yet, so
        # the first collection is always sent (the monotonic clock starts
        # near 0 at boot: "0" would hold back events on a fresh machine).
        self._last_emit: dict[int, int] = {}
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        generation = info.get("generation", -1)
        if phase == "start":
            self._started[generation] = time.monotonic_ns()
            return
        began = self._started.pop(generation, None)
        if began is None:
            return
        now = time.monotonic_ns()
        acc = self._pending.setdefault(generation, [0, 0, 0])
        acc[0] += now - began
        acc[1] += info.get("collected", 0)
        acc[2] += 1
        last = self._last_emit.get(generation)
        if last is not None and now - last < self._min_interval_ns:
            return
        duration, collected, count = acc
        self._pending[generation] = [0, 0, 0]
        self._last_emit[generation] = now
        telemetry.emit(
            "python.gc.completed",
            {
                "duration": duration,
                "collected": collected,
                "generation": generation,
                "count": count,
            },
        )

    def install(self) -> GcTelemetry:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False
