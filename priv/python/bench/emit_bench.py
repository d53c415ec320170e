#!/usr/bin/env python3
"""Measures what one ``telemetry.emit`` call costs, and what the gRPC stream carries.

    python3 priv/python/bench/emit_bench.py [--batches 200] [--per-batch 2000]
        [--throughput-seconds 2] [--rate 150000] [--switch-interval 0.001] [--json]

Per-call cases (``ns``): each runs ``batches`` timed batches of ``per-batch``
calls and reports the median of the per-call times (batch time / calls, loop
overhead included; the empty-loop row shows that overhead):

* ``no_backend``          -- telemetry off (``emit`` returns at once)
* ``noop_backend``        -- a backend that does nothing: the cost of the generic path
                             (correlation lookup + coercion fast path + dispatch)
* ``noop_backend_coerce`` -- the same with values needing coercion (slow path)
* ``stderr_stringio``     -- StderrBackend writing to an in-memory ``io.StringIO``
* ``stderr_devnull``      -- StderrBackend writing to ``/dev/null`` (a real
                             ``write`` syscall per event)
* ``stderr_devnull_stdlib`` -- the same with orjson hidden (the standard library's path)
* ``span_noop_backend``   -- one ``with span(...)`` (start + stop events), noop backend
* ``grpc_backend``        -- GrpcBackend: the event is queued on a TelemetryStream
* ``grpc_backend_full``   -- the same with the stream's buffer full (dropped, counted)
* ``grpc_backend_off``    -- the same while the stream is toggled off (counted)
* ``encode_wire``         -- per event, building a 512-event ``TelemetryEventBatch``
                             with the stream's hand-written Python encoder (``telemetry/wire.py``)
* ``encode_native``       -- the same with the native encoder (``_speedups``; only when
                             it is built and not turned off)
* ``encode_protobuf``     -- the same with the protobuf runtime (messages built with
                             keyword arguments, then ``SerializeToString``), for comparison

Stream cases (skipped with ``--throughput-seconds 0``), each through a real
``grpc.aio`` server (the worker's ``BridgeService``, ``StreamTelemetryBatched``)
and an in-process ``grpc.aio`` client that parses each batch and counts its
events; the process uses the worker's GIL switch interval:

* ``rpc_drain_eps``         -- events/s draining a buffer filled beforehand (the
                               stream side alone: take, encode, send, receive)
* ``rpc_paced_eps``         -- events/s delivered while a thread emits at ``--rate``
                               events/s (bursts of 100); ``rpc_paced_drop_pct``: the
                               share of its events dropped (buffer of 1024 full)
* ``rpc_unpaced_eps``       -- events/s delivered while a thread emits in a tight
                               loop (it wins the GIL most of the time and mostly
                               drops); ``rpc_unpaced_drop_pct`` likewise
* ``latency_p50_us`` / ``latency_p99_us`` -- emit (``timestamp_ns``) to the client
                               receiving the batch, at 10,000 events/s (10 per ms)
* ``latency_busy_p50_us`` / ``latency_busy_p99_us`` -- the same while another thread
                               computes in pure Python all along (it holds the GIL
                               whenever it can: see ``--switch-interval``)

The in-process client competes for the GIL with the worker; a real client (the
Rust NIF) runs in another process, so these figures are pessimistic.

Token cases (skipped with ``--auth-calls 0``): what the worker token costs.

* ``auth_check_ns``    -- one ``TokenAuthInterceptor.authorized`` (metadata scan +
                          constant-time compare), median over batches
* ``auth_intercept_ns`` -- one whole ``intercept_service`` of an authorized call
                          (the check, plus awaiting grpc's continuation, here a stub)
* ``rpc_ping_us`` / ``rpc_ping_auth_us`` -- median round trip of a ``Ping`` from an
                          in-process client, server without / with the token
                          interceptor (blocks of 100 calls, alternated, one run)

A telemetry event costs the token nothing: the stream is authenticated once,
when it opens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# grpc core's INFO lines (e.g. a GOAWAY at teardown) would clutter the output.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402

import grpc_server  # noqa: E402
from snakepit_bridge import telemetry  # noqa: E402
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb  # noqa: E402
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc  # noqa: E402
from snakepit_bridge.telemetry import wire  # noqa: E402
from snakepit_bridge.telemetry.backends import stderr as stderr_backend  # noqa: E402
from snakepit_bridge.telemetry.backends.base import TelemetryBackend  # noqa: E402
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend  # noqa: E402
from snakepit_bridge.telemetry.backends.stderr import StderrBackend  # noqa: E402
from snakepit_bridge.telemetry.stream import TelemetryStream  # noqa: E402
from snakepit_bridge.telemetry.wire import EventEncoder  # noqa: E402

MEASUREMENTS = {"bytes": 1234, "duration": 5678}
METADATA = {"tool": "predict", "operation": "bench"}
MIXED_MEASUREMENTS = {"bytes": "1234", "duration": 5678, "flag": True}
MIXED_METADATA = {"tool": "predict", "attempt": 3, "skip": None}


class NoopBackend(TelemetryBackend):
    """Accepts every event and does nothing with it."""

    def emit(self, event_name, measurements, metadata, correlation_id):  # type: ignore[override]
        pass


def _time(
    fn: Callable[[int], None],
    batches: int,
    per_batch: int,
    setup: Callable[[], None] | None = None,
) -> float:
    fn(per_batch)  # warm up
    per_call = []
    for _ in range(batches):
        if setup is not None:
            setup()  # not timed
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
            # The same without the optional orjson: the standard library's path.
            saved, stderr_backend._orjson = stderr_backend._orjson, None
            try:
                results["stderr_devnull_stdlib"] = _time(plain, batches, per_batch)
            finally:
                stderr_backend._orjson = saved

        stream = TelemetryStream(max_buffer=per_batch + 1)
        telemetry.set_backend(GrpcBackend(stream))
        # The consumer empties the buffer between batches (outside the timing).
        results["grpc_backend"] = _time(plain, batches, per_batch, stream._buffer.clear)
        telemetry.set_backend(GrpcBackend(TelemetryStream(max_buffer=1)))
        results["grpc_backend_full"] = _time(plain, batches, per_batch)
        off = TelemetryStream()
        off.toggle(False)
        telemetry.set_backend(GrpcBackend(off))
        results["grpc_backend_off"] = _time(plain, batches, per_batch)

        events = [_queued_event(i) for i in range(512)]
        encoder = EventEncoder(native=False)
        results["encode_wire"] = _time_per_item(lambda: encoder.batch(events), 512, batches)
        if wire.NATIVE is not None:
            native = EventEncoder()
            results["encode_native"] = _time_per_item(lambda: native.batch(events), 512, batches)
        results["encode_protobuf"] = _time_per_item(
            lambda: _protobuf_batch(events), 512, max(batches // 10, 3)
        )
    finally:
        telemetry.set_backend(previous)
    return results


def _queued_event(i: int) -> tuple:
    return ("tool.result_size", dict(MEASUREMENTS), dict(METADATA), time.time_ns() + i, "req-1")


def _time_per_item(fn: Callable[[], object], items: int, rounds: int) -> float:
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / items)
    return statistics.median(samples)


def _protobuf_batch(events: list[tuple]) -> bytes:
    value = pb.TelemetryValue
    batch = pb.TelemetryEventBatch(
        events=[
            pb.TelemetryEvent(
                event_parts=name.split("."),
                measurements={
                    k: value(int_value=v) if type(v) is int else value(float_value=v)
                    for k, v in measurements.items()
                },
                metadata=metadata,
                timestamp_ns=timestamp_ns,
                correlation_id=correlation_id or "",
            )
            for name, measurements, metadata, timestamp_ns, correlation_id in events
        ]
    )
    return batch.SerializeToString()


# --- through the batched RPC ---------------------------------------------------------


class _Client:
    """A worker server plus an in-process client counting what it receives."""

    def __init__(self, stream: TelemetryStream) -> None:
        self.stream = stream
        self.received = 0
        self.latencies_ns: list[int] = []
        self.last_at = 0.0
        self.record_latency = False

    async def __aenter__(self) -> _Client:
        self.server, port, _ = await grpc_server.start_server(telemetry_stream=self.stream)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stop = asyncio.Event()
        stub = pb_grpc.BridgeServiceStub(self.channel)
        self.call = stub.StreamTelemetryBatched(self._controls())
        await self.call.initial_metadata()
        self.reader = asyncio.ensure_future(self._read())
        return self

    async def _controls(self):  # noqa: ANN202
        yield pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=True))
        await self.stop.wait()

    async def _read(self) -> None:
        while (batch := await self.call.read()) is not grpc.aio.EOF:
            if self.record_latency:
                now = time.time_ns()
                self.latencies_ns.extend(now - e.timestamp_ns for e in batch.events)
            self.received += len(batch.events)
            self.last_at = time.perf_counter()

    async def quiet(self, seconds: float = 0.2) -> None:
        """Waits until nothing arrived for ``seconds``."""
        while True:
            before = self.received
            await asyncio.sleep(seconds)
            if self.received == before and not self.stream.stats()["buffered"]:
                return

    async def __aexit__(self, *exc: object) -> None:
        # A half-close leaves the event stream open (as the reference worker
        # does): cancelling the call is how a client ends it.
        self.stop.set()
        self.call.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.reader, 5)
        await self.stream_detached()
        await self.channel.close()
        await self.server.stop(0)

    async def stream_detached(self, timeout: float = 5.0) -> None:
        """Waits until the server side has let go of the stream."""
        deadline = time.monotonic() + timeout
        while self.stream.stats()["attached"] and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


def _producer(seconds: float, rate: float, burst: int) -> tuple[threading.Thread, list[float]]:
    """A thread emitting ``rate`` events/s in bursts (``rate`` 0: as fast as it can)."""
    started: list[float] = []

    def run() -> None:
        emit = telemetry.emit
        start = time.perf_counter()
        started.append(start)
        sent = 0
        while (now := time.perf_counter()) - start < seconds:
            if rate and sent >= (now - start) * rate:
                time.sleep(min(burst / rate, 0.001))
                continue
            for _ in range(burst):
                emit("tool.result_size", MEASUREMENTS, METADATA, "req-1")
            sent += burst

    return threading.Thread(target=run, name="producer"), started


async def _delivered(seconds: float, rate: float, burst: int = 100) -> tuple[float, float]:
    stream = TelemetryStream(max_buffer=1024)
    telemetry.set_backend(GrpcBackend(stream))
    async with _Client(stream) as client:
        thread, started = _producer(seconds, rate, burst)
        thread.start()
        await asyncio.to_thread(thread.join)
        await client.quiet(min(seconds, 0.2))
        elapsed = client.last_at - started[0]
        stats = stream.stats()
    return client.received / elapsed, 100.0 * stats["dropped"] / max(stats["emitted"], 1)


async def _drain(events: int) -> float:
    stream = TelemetryStream(max_buffer=events)
    telemetry.set_backend(GrpcBackend(stream))
    for _ in range(events):
        telemetry.emit("tool.result_size", MEASUREMENTS, METADATA, "req-1")
    started = time.perf_counter()
    async with _Client(stream) as client:
        while client.received < events:
            await asyncio.sleep(0.001)
        return events / (client.last_at - started)


async def _latency(seconds: float, busy: bool) -> tuple[float, float]:
    stream = TelemetryStream(max_buffer=1024)
    telemetry.set_backend(GrpcBackend(stream))
    done = threading.Event()

    def spin() -> None:  # a tool thread computing in pure Python
        x = 0
        while not done.is_set():
            x += 1

    spinner = threading.Thread(target=spin, name="busy")
    async with _Client(stream) as client:
        if busy:
            spinner.start()
        client.record_latency = True
        thread, _ = _producer(seconds, 10_000.0, 10)
        thread.start()
        await asyncio.to_thread(thread.join)
        await client.quiet(min(seconds, 0.2))
        done.set()
        if busy:
            spinner.join()
    samples = sorted(client.latencies_ns)
    if not samples:
        return 0.0, 0.0
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return statistics.median(samples) / 1000, p99 / 1000


def run_stream_cases(seconds: float, rate: float) -> dict[str, float]:
    """The stream cases (see the module docs); restores the active backend."""
    previous = telemetry.get_backend()
    results: dict[str, float] = {}
    try:
        results["rpc_drain_eps"] = asyncio.run(_drain(max(int(seconds * 150_000), 1_000)))
        eps, drops = asyncio.run(_delivered(seconds, rate))
        results["rpc_paced_eps"], results["rpc_paced_drop_pct"] = eps, drops
        eps, drops = asyncio.run(_delivered(seconds, 0.0))
        results["rpc_unpaced_eps"], results["rpc_unpaced_drop_pct"] = eps, drops
        p50, p99 = asyncio.run(_latency(seconds, busy=False))
        results["latency_p50_us"], results["latency_p99_us"] = p50, p99
        p50, p99 = asyncio.run(_latency(seconds, busy=True))
        results["latency_busy_p50_us"], results["latency_busy_p99_us"] = p50, p99
    finally:
        telemetry.set_backend(previous)
    return results


async def _ping_round_trips(token: str | None, blocks: int, per_block: int) -> list[float]:
    """Per-call Ping round trips (µs), one median per block of ``per_block`` calls."""
    server, port, _ = await grpc_server.start_server(token=token)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            request = pb.PingRequest(message="x")
            for _ in range(per_block):  # warm up
                await stub.Ping(request, metadata=metadata)
            medians = []
            for _ in range(blocks):
                times = []
                for _ in range(per_block):
                    start = time.perf_counter_ns()
                    await stub.Ping(request, metadata=metadata)
                    times.append((time.perf_counter_ns() - start) / 1000)
                medians.append(statistics.median(times))
            return medians
    finally:
        await server.stop(0)


def run_auth_cases(calls: int) -> dict[str, float]:
    """The token cases (see the module docs)."""
    from snakepit_bridge.server.auth import TokenAuthInterceptor

    token = "bench-token-0123456789abcdefghij"
    check = TokenAuthInterceptor(token)
    metadata = (("x-snakepit-correlation-id", "req-1"), ("authorization", f"Bearer {token}"))

    def checks(n: int) -> None:
        for _ in range(n):
            check.authorized(metadata)

    details = types.SimpleNamespace(
        method="/snakepit.bridge.BridgeService/Ping", invocation_metadata=metadata
    )

    async def continuation(_details: object) -> None:
        return None

    async def intercepts(n: int) -> None:
        for _ in range(n):
            await check.intercept_service(continuation, details)

    loop = asyncio.new_event_loop()
    try:
        intercept_ns = _time(lambda n: loop.run_until_complete(intercepts(n)), 50, 2000)
    finally:
        loop.close()

    per_block = 100
    blocks = max(calls // (2 * per_block), 1)
    plain: list[float] = []
    authed: list[float] = []
    for _ in range(blocks):  # alternated, so drift hits both alike
        plain += asyncio.run(_ping_round_trips(None, 1, per_block))
        authed += asyncio.run(_ping_round_trips(token, 1, per_block))
    return {
        "auth_check_ns": _time(checks, 50, 2000),
        "auth_intercept_ns": intercept_ns,
        "rpc_ping_us": statistics.median(plain),
        "rpc_ping_auth_us": statistics.median(authed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="telemetry emit cost and stream throughput")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--per-batch", type=int, default=2000)
    parser.add_argument(
        "--throughput-seconds", type=float, default=2.0, help="per stream case; 0 skips them"
    )
    parser.add_argument("--rate", type=float, default=150_000.0, help="paced case, events/s")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=grpc_server.DEFAULT_SWITCH_INTERVAL,
        help="sys.setswitchinterval (default: the worker's)",
    )
    parser.add_argument(
        "--auth-calls", type=int, default=4000, help="Ping calls of the token cases; 0 skips them"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.switch_interval > 0:
        sys.setswitchinterval(args.switch_interval)
    results = run(max(args.batches, 1), max(args.per_batch, 1))
    if args.throughput_seconds > 0:
        results.update(run_stream_cases(args.throughput_seconds, max(args.rate, 1.0)))
    if args.auth_calls > 0:
        results.update(run_auth_cases(args.auth_calls))
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in results.items()}, sort_keys=True))
    else:
        print(f"python {sys.version.split()[0]}, {args.batches} x {args.per_batch} calls per case")
        print(f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms")
        for case, value in results.items():
            unit = (
                "events/s"
                if case.endswith("_eps")
                else "% dropped"
                if case.endswith("_pct")
                else "us"
                if case.endswith("_us")
                else "ns/call (median)"
                if not case.startswith("encode")
                else "ns/event (median)"
            )
            print(f"  {case:<22} {value:12,.1f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
