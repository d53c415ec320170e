#!/usr/bin/env python3
"""Measures what one ``telemetry.emit`` call costs, in nanoseconds (median).

    python3 priv/python/bench/emit_bench.py [--batches 200] [--per-batch 2000] [--json]

Each case runs ``batches`` timed batches of ``per-batch`` calls and reports the
median of the per-call times (batch time / calls, loop overhead included; the
empty-loop row shows that overhead). Cases:

* ``no_backend``          -- telemetry off (``emit`` returns at once)
* ``noop_backend``        -- a backend that does nothing: the cost of the generic path
                             (correlation lookup + coercion fast path + dispatch)
* ``noop_backend_coerce`` -- the same with values needing coercion (slow path)
* ``stderr_stringio``     -- StderrBackend writing to an in-memory ``io.StringIO``
* ``stderr_devnull``      -- StderrBackend writing to ``/dev/null`` (a real
                             ``write`` + ``flush`` syscall per event)
* ``span_noop_backend``   -- one ``with span(...)`` (start + stop events), noop backend
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snakepit_bridge import telemetry  # noqa: E402
from snakepit_bridge.telemetry.backends.base import TelemetryBackend  # noqa: E402
from snakepit_bridge.telemetry.backends.stderr import StderrBackend  # noqa: E402

MEASUREMENTS = {"bytes": 1234, "duration": 5678}
METADATA = {"tool": "predict", "operation": "bench"}
MIXED_MEASUREMENTS = {"bytes": "1234", "duration": 5678, "flag": True}
MIXED_METADATA = {"tool": "predict", "attempt": 3, "skip": None}


class NoopBackend(TelemetryBackend):
    """Accepts every event and does nothing with it."""

    def emit(self, event_name, measurements, metadata, correlation_id):  # type: ignore[override]
        pass


def _time(fn: Callable[[int], None], batches: int, per_batch: int) -> float:
    fn(per_batch)  # warm up
    per_call = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        fn(per_batch)
        per_call.append((time.perf_counter_ns() - start) / per_batch)
    return statistics.median(per_call)


def _emit_loop(measurements: dict, metadata: dict) -> Callable[[int], None]:
    emit = telemetry.emit

    def run(n: int) -> None:
        for _ in range(n):
            emit("tool.result_size", measurements, metadata, "req-1")

    return run


def _empty_loop(n: int) -> None:
    for _ in range(n):
        pass


def _span_loop(n: int) -> None:
    span = telemetry.span
    for _ in range(n):
        with span("tool.execution", METADATA, "req-1"):
            pass


def run(batches: int, per_batch: int) -> dict[str, float]:
    """All cases, ``{case: median ns per call}``; restores the active backend."""
    previous = telemetry.get_backend()
    results: dict[str, float] = {}
    plain = _emit_loop(MEASUREMENTS, METADATA)
    try:
        results["empty_loop"] = _time(_empty_loop, batches, per_batch)

        telemetry.set_backend(None)
        results["no_backend"] = _time(plain, batches, per_batch)

        telemetry.set_backend(NoopBackend())
        results["noop_backend"] = _time(plain, batches, per_batch)
        results["noop_backend_coerce"] = _time(
            _emit_loop(MIXED_MEASUREMENTS, MIXED_METADATA), batches, per_batch
        )
        results["span_noop_backend"] = _time(_span_loop, batches, per_batch)

        buffer = io.StringIO()

        def stringio(n: int) -> None:
            buffer.seek(0)
            buffer.truncate()
            plain(n)

        telemetry.set_backend(StderrBackend(buffer))
        results["stderr_stringio"] = _time(stringio, batches, per_batch)

        with open(os.devnull, "w") as devnull:
            telemetry.set_backend(StderrBackend(devnull))
            results["stderr_devnull"] = _time(plain, batches, per_batch)
    finally:
        telemetry.set_backend(previous)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="median ns per telemetry.emit call")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = run(max(args.batches, 1), max(args.per_batch, 1))
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}, sort_keys=True))
    else:
        print(f"python {sys.version.split()[0]}, {args.batches} x {args.per_batch} calls per case")
        for case, ns in results.items():
            print(f"  {case:<22} {ns:8.1f} ns/call (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
