"""Resource telemetry: memory/CPU samples and summarised GC events."""

from __future__ import annotations

import gc
import time

import psutil
import pytest

from snakepit_bridge.telemetry.resources import GcTelemetry, ResourceSampler


def test_sample_once_emits_memory_and_cpu(recorder):
    ResourceSampler(1.0).sample_once(psutil.Process())
    mem = recorder.one("python.memory.sampled")
    assert mem.measurements["rss_bytes"] > 0
    assert mem.measurements["vms_bytes"] >= mem.measurements["rss_bytes"]
    assert "cpu_percent" in recorder.one("python.cpu.sampled").measurements


def test_sampler_thread_emits_on_its_interval_and_stops(recorder):
    sampler = ResourceSampler(0.02).start()
    deadline = time.monotonic() + 3
    while "python.cpu.sampled" not in recorder.names() and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert "python.memory.sampled" in recorder.names()
    count = len(recorder.names())
    time.sleep(0.1)
    assert len(recorder.names()) == count, "no samples after stop()"


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        ResourceSampler(0)


def test_gc_events_are_summarised_per_generation(recorder):
    gct = GcTelemetry(min_interval_s=3600).install()
    try:
        for _ in range(5):
            gc.collect(0)
    finally:
        gct.uninstall()
    events = [e for e in recorder.events if e.event == "python.gc.completed"]
    # The first collection is sent at once; the next ones wait for the interval.
    assert len(events) == 1
    assert events[0].measurements["generation"] == 0
    assert events[0].measurements["count"] == 1
    assert events[0].measurements["duration"] >= 0


def test_gc_events_every_collection_when_interval_is_zero(recorder):
    gct = GcTelemetry(min_interval_s=0).install()
    try:
        gc.collect(2)
        gc.collect(2)
    finally:
        gct.uninstall()
    gc_events = [e for e in recorder.events if e.event == "python.gc.completed"]
    gens = [e.measurements["generation"] for e in gc_events]
    assert gens.count(2) == 2
