"""TelemetryStream: the emit side (queueing, drops, controls, counters) and the
two streaming RPCs over a real in-process grpc.aio server and client."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from typing import Any

import grpc
import pytest
from bridge_harness import (
    Controls,
    Harness,
    event_filter,
    measurements,
    name,
    read_batches,
    read_events,
    sampling,
    serving,
    toggle,
    wait_until,
)

from snakepit_bridge import telemetry
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend
from snakepit_bridge.telemetry.stream import TelemetryStream

M = {"bytes": 10}
MD = {"tool": "t"}


def names_in_buffer(stream: TelemetryStream) -> list[str]:
    return [event[0] for event in stream._buffer]


def counts(stream: TelemetryStream, *keys: str) -> dict[str, int]:
    stats = stream.stats()
    return {k: stats[k] for k in keys}


# --- emit side ------------------------------------------------------------------------


def test_emit_queues_a_plain_tuple_with_copied_dicts() -> None:
    stream = TelemetryStream()
    measurements_in, metadata_in = {"bytes": 1}, {"tool": "a"}
    before = time.time_ns()
    stream.emit("tool.result_size", measurements_in, metadata_in, "req-1")
    measurements_in["bytes"] = 2
    metadata_in["tool"] = "changed"
    (event,) = stream._buffer
    assert event[0] == "tool.result_size"
    assert event[1] == {"bytes": 1} and event[2] == {"tool": "a"}
    assert before <= event[3] <= time.time_ns()
    assert event[4] == "req-1"
    assert counts(stream, "emitted", "buffered", "sent", "dropped") == {
        "emitted": 1,
        "buffered": 1,
        "sent": 0,
        "dropped": 0,
    }


def test_full_buffer_drops_new_events_and_counts_them() -> None:
    stream = TelemetryStream(max_buffer=3)
    for i in range(5):
        stream.emit(f"e.{i}", M, MD)
    assert names_in_buffer(stream) == ["e.0", "e.1", "e.2"]
    assert counts(stream, "emitted", "buffered", "dropped") == {
        "emitted": 5,
        "buffered": 3,
        "dropped": 2,
    }


def test_max_buffer_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TelemetryStream(max_buffer=0)


def test_toggle_applies_at_once() -> None:
    stream = TelemetryStream()
    stream.emit("a.b", M, MD)
    stream.toggle(False)
    stream.emit("a.b", M, MD)
    stream.emit("c.d", M, MD)
    stream.toggle(True)
    stream.emit("a.b", M, MD)
    assert names_in_buffer(stream) == ["a.b", "a.b"]
    assert counts(stream, "emitted", "disabled") == {"emitted": 4, "disabled": 2}


def test_sampling_zero_and_one() -> None:
    stream = TelemetryStream()
    stream.update_sampling(0.0)
    stream.emit("a.b", M, MD)
    stream.update_sampling(1.0)
    stream.emit("a.b", M, MD)
    assert names_in_buffer(stream) == ["a.b"]
    assert stream.stats()["sampled_out"] == 1


def test_sampling_rate_is_respected_statistically() -> None:
    stream = TelemetryStream(max_buffer=100_000)
    random.seed(1234)
    stream.update_sampling(0.25)
    for _ in range(20_000):
        stream.emit("a.b", M, MD)
    kept = stream.stats()["buffered"]
    assert 4_500 < kept < 5_500
    assert stream.stats()["sampled_out"] == 20_000 - kept


def test_sampling_patterns_sample_only_matching_events() -> None:
    stream = TelemetryStream()
    stream.update_sampling(0.0, ["python.*"])
    stream.emit("python.call.start", M, MD)
    stream.emit("tool.result_size", M, MD)
    stream.emit("python.error.occurred", M, MD)
    assert names_in_buffer(stream) == ["tool.result_size"]
    assert stream.stats()["sampled_out"] == 2


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(2.0, 1.0), (-1.0, 0.0), (0.5, 0.5), (math.inf, 1.0), (-math.inf, 0.0)],
)
def test_sampling_rate_is_clamped(rate: float, expected: float) -> None:
    stream = TelemetryStream()
    stream.update_sampling(rate)
    assert stream.settings()["sampling_rate"] == expected


def test_nan_sampling_rate_is_ignored() -> None:
    stream = TelemetryStream()
    stream.update_sampling(0.5)
    stream.update_sampling(math.nan)
    assert stream.settings()["sampling_rate"] == 0.5


def test_filter_deny_wins_and_empty_allow_admits_all() -> None:
    stream = TelemetryStream()
    stream.update_filter(allow=["tool.*"], deny=["tool.result_size"])
    for event in ("tool.execution.start", "tool.result_size", "python.call.start"):
        stream.emit(event, M, MD)
    assert names_in_buffer(stream) == ["tool.execution.start"]
    assert stream.stats()["filtered_out"] == 2

    stream.update_filter(allow=[], deny=["python.*"])
    stream.emit("python.call.start", M, MD)
    stream.emit("anything.else", M, MD)
    assert names_in_buffer(stream)[-1] == "anything.else"
    assert stream.stats()["filtered_out"] == 3

    stream.update_filter()
    stream.emit("python.call.start", M, MD)
    assert names_in_buffer(stream)[-1] == "python.call.start"


def test_filter_is_checked_before_sampling_and_off_before_both() -> None:
    stream = TelemetryStream()
    stream.update_filter(deny=["a.*"])
    stream.update_sampling(0.0)
    stream.emit("a.x", M, MD)  # filtered
    stream.emit("b.x", M, MD)  # sampled out
    stream.toggle(False)
    stream.emit("a.x", M, MD)  # disabled
    assert counts(stream, "filtered_out", "sampled_out", "disabled", "emitted") == {
        "filtered_out": 1,
        "sampled_out": 1,
        "disabled": 1,
        "emitted": 3,
    }


def test_cached_verdicts_are_invalidated_by_new_settings() -> None:
    stream = TelemetryStream()
    stream.emit("a.b", M, MD)  # verdict cached: pass
    stream.update_filter(deny=["a.b"])
    stream.emit("a.b", M, MD)
    stream.update_filter()
    stream.emit("a.b", M, MD)
    assert len(stream._buffer) == 2 and stream.stats()["filtered_out"] == 1


def test_apply_control_messages() -> None:
    stream = TelemetryStream()
    stream.apply_control(toggle(False))
    stream.apply_control(sampling(0.3, ["python.*"]))
    stream.apply_control(event_filter(["a"], ["b"]))
    stream.apply_control(pb.TelemetryControl())  # empty: ignored
    assert stream.settings() == {
        "enabled": False,
        "sampling_rate": 0.3,
        "sampling_patterns": ["python.*"],
        "allow": ["a"],
        "deny": ["b"],
        "closed": False,
    }
    assert stream.stats()["controls"] == 3


def test_emit_from_many_threads_loses_nothing() -> None:
    threads, per_thread = 8, 3_000
    big = TelemetryStream(max_buffer=threads * per_thread)
    small = TelemetryStream(max_buffer=500)
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            big.emit(f"t{i}.e", {"n": n}, MD)
            small.emit(f"t{i}.e", {"n": n}, MD)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = threads * per_thread
    assert counts(big, "emitted", "buffered", "dropped") == {
        "emitted": total,
        "buffered": total,
        "dropped": 0,
    }
    # Each thread's events keep their order.
    for i in range(threads):
        ns = [e[1]["n"] for e in big._buffer if e[0] == f"t{i}.e"]
        assert ns == list(range(per_thread))
    stats = small.stats()
    assert stats["emitted"] == total
    assert stats["buffered"] + stats["dropped"] == total
    assert 500 <= stats["buffered"] <= 500 + threads  # soft bound, see the module docs


def test_grpc_backend_feeds_the_stream_through_the_public_api() -> None:
    stream = TelemetryStream()
    backend = GrpcBackend(stream)
    telemetry.set_backend(backend)
    telemetry.emit("tool.result_size", {"bytes": "12", "flag": True}, {"n": 3}, "c-1")
    with telemetry.span("tool.execution", {"tool": "x"}):
        pass
    assert names_in_buffer(stream) == [
        "tool.result_size",
        "tool.execution.start",
        "tool.execution.stop",
    ]
    first = stream._buffer[0]
    assert first[1] == {"bytes": 12, "flag": 1} and first[2] == {"n": "3"} and first[4] == "c-1"
    assert backend.stats() == stream.stats()
    backend.close()
    assert stream.closed


def test_emits_after_close_are_dropped() -> None:
    stream = TelemetryStream()
    stream.emit("a.b", M, MD)
    stream.close()
    stream.close()  # idempotent
    stream.emit("a.b", M, MD)
    assert counts(stream, "emitted", "buffered", "dropped") == {
        "emitted": 2,
        "buffered": 1,
        "dropped": 1,
    }


# --- the RPCs ----------------------------------------------------------------------------


def run(coro):  # noqa: ANN001, ANN201 - tiny helper
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_both_rpcs_send_headers_before_any_event() -> None:
    async def main() -> None:
        async with serving() as h:
            for method in (h.stub.StreamTelemetryBatched, h.stub.StreamTelemetry):
                controls = Controls()
                call = method(controls)
                started = time.monotonic()
                await asyncio.wait_for(call.initial_metadata(), 2)
                assert time.monotonic() - started < 1.0
                assert h.stream.stats()["sent"] == 0
                await wait_until(lambda: h.stream.stats()["attached"] == 1)
                call.cancel()
                await wait_until(lambda: h.stream.stats()["attached"] == 0)

    run(main())


def test_batched_rpc_delivers_events_buffered_before_attach_with_the_wire_mapping() -> None:
    async def main() -> None:
        stream = TelemetryStream(max_buffer=4)
        stream.emit(
            "tool.result_size",
            {"small": 5, "neg": -7, "big": 2**70, "f": 1.5, "zero": 0},
            {"tool": "t", "model": "m"},
            "req-9",
        )
        stream.emit("python.call.start", {"system_time": 1}, {}, None)
        for _ in range(4):
            stream.emit("x.y", M, MD)  # two fit, two are dropped
        async with serving(stream) as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            (batch,) = await read_batches(call, 4)
            first, second = batch.events[0], batch.events[1]
            assert list(first.event_parts) == ["tool", "result_size"]
            assert measurements(first) == {
                "small": 5,
                "neg": -7,
                "big": float(2**70),
                "f": 1.5,
                "zero": 0,
            }
            assert first.measurements["zero"].WhichOneof("value") == "int_value"
            assert first.measurements["big"].WhichOneof("value") == "float_value"
            assert dict(first.metadata) == {"tool": "t", "model": "m"}
            assert first.correlation_id == "req-9"
            assert abs(first.timestamp_ns - time.time_ns()) < 10 * 10**9
            assert name(second) == "python.call.start" and second.correlation_id == ""
            assert [name(e) for e in batch.events[2:]] == ["x.y", "x.y"]
            assert batch.emitted_total == 6 and batch.dropped_total == 2
            # The totals name their source: this stream object, not another.
            assert batch.source_id == stream.source_id > 0
            assert TelemetryStream().source_id != stream.source_id
            call.cancel()

    run(main())


def test_batched_rpc_streams_events_emitted_from_threads_while_attached() -> None:
    async def main() -> None:
        async with serving(TelemetryStream(max_buffer=10_000)) as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            await call.initial_metadata()
            await wait_until(lambda: h.stream.stats()["attached"] == 1)

            def work(i: int) -> None:
                for n in range(500):
                    telemetry.emit("tool.result_size", {"bytes": n}, {"tool": f"w{i}"})
                    if n % 100 == 0:
                        time.sleep(0.001)  # let the consumer park and be woken

            threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            events = await read_events(call, 2_000)
            for t in threads:
                t.join()
            assert len(events) == 2_000
            for i in range(4):
                got = [measurements(e)["bytes"] for e in events if e.metadata["tool"] == f"w{i}"]
                assert got == list(range(500))
            await wait_until(lambda: h.stream.stats()["sent"] == 2_000)
            call.cancel()

    run(main())


def test_a_parked_consumer_is_woken_by_an_emit_from_another_thread() -> None:
    async def main() -> None:
        async with serving() as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            await call.initial_metadata()
            await wait_until(lambda: h.stream._wake_len == 1)
            emitted_at = time.monotonic()
            threading.Thread(target=telemetry.emit, args=("a.b", M, MD)).start()
            (event,) = await read_events(call, 1)
            assert name(event) == "a.b"
            assert time.monotonic() - emitted_at < 0.5
            call.cancel()

    run(main())


def test_batches_respect_max_batch_and_carry_running_totals() -> None:
    async def main() -> None:
        stream = TelemetryStream(max_buffer=100)
        stream.toggle(False)
        stream.emit("off.a", M, MD)
        stream.toggle(True)
        stream.update_filter(deny=["deny.*"])
        stream.emit("deny.a", M, MD)
        stream.update_sampling(0.0, ["sample.*"])
        stream.emit("sample.a", M, MD)
        for _ in range(25):
            stream.emit("ok.a", M, MD)
        async with serving(stream, max_batch=10) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            batches = await read_batches(call, 25)
            assert [len(b.events) for b in batches] == [10, 10, 5]
            last = batches[-1]
            assert last.emitted_total == 28
            assert last.disabled_total == 1
            assert last.filtered_out_total == 1
            assert last.sampled_out_total == 1
            assert last.dropped_total == 0
            call.cancel()

    run(main())


def test_idle_batched_stream_sends_only_changed_totals() -> None:
    async def main() -> None:
        stream = TelemetryStream(totals_interval=0.05)
        async with serving(stream) as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(False)))
            await wait_until(lambda: not stream.settings()["enabled"])
            telemetry.emit("a.b", M, MD)  # counted as disabled, not sent
            batch = await asyncio.wait_for(call.read(), 2)
            assert len(batch.events) == 0
            assert batch.disabled_total == 1 and batch.emitted_total == 1
            # Nothing changes any more: nothing more is sent.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call.read(), 0.3)
            call.cancel()

    run(main())


def test_controls_over_the_wire_apply_at_once() -> None:
    async def main() -> None:
        async with serving() as h:
            controls = Controls(toggle(True))
            call = h.stub.StreamTelemetryBatched(controls)
            await wait_until(lambda: h.stream.stats()["controls"] == 1)

            controls.send(event_filter(allow=["tool.*", "python.*"], deny=["tool.result_size"]))
            controls.send(sampling(0.0, ["python.*"]))
            await wait_until(lambda: h.stream.stats()["controls"] == 3)
            for event in ("tool.execution.start", "tool.result_size", "python.call.start", "x.y"):
                telemetry.emit(event, M, MD)
            (event,) = await read_events(call, 1)
            assert name(event) == "tool.execution.start"

            controls.send(toggle(False))
            await wait_until(lambda: h.stream.stats()["controls"] == 4)
            telemetry.emit("tool.execution.start", M, MD)
            controls.send(toggle(True))
            controls.send(sampling(1.0))
            controls.send(event_filter())
            await wait_until(lambda: h.stream.stats()["controls"] == 7)
            telemetry.emit("x.y", M, MD)
            (batch,) = await read_batches(call, 1)
            assert [name(e) for e in batch.events] == ["x.y"]
            assert batch.filtered_out_total == 2
            assert batch.sampled_out_total == 1
            assert batch.disabled_total == 1
            assert batch.emitted_total == 6
            call.cancel()

    run(main())


def test_stock_rpc_yields_one_event_per_frame() -> None:
    async def main() -> None:
        async with serving() as h:
            for i in range(3):
                telemetry.emit("tool.result_size", {"bytes": i}, {"tool": "t"}, f"c-{i}")
            call = h.stub.StreamTelemetry(Controls(toggle(True)))
            events = [await asyncio.wait_for(call.read(), 2) for _ in range(3)]
            assert all(isinstance(e, pb.TelemetryEvent) for e in events)
            assert [measurements(e)["bytes"] for e in events] == [0, 1, 2]
            assert [e.correlation_id for e in events] == ["c-0", "c-1", "c-2"]
            telemetry.emit("a.b", M, MD)
            assert name(await asyncio.wait_for(call.read(), 2)) == "a.b"
            await wait_until(lambda: h.stream.stats()["sent"] == 4)
            call.cancel()

    run(main())


async def first_event_name(call: Any) -> str:
    """The first event's name on either RPC (a batch or a single event)."""
    frame = await asyncio.wait_for(call.read(), 5)
    assert frame is not grpc.aio.EOF, "stream ended before an event came"
    return name(frame.events[0] if isinstance(frame, pb.TelemetryEventBatch) else frame)


def test_half_closed_control_stream_keeps_streaming() -> None:
    """As the reference's TelemetryStream: the client ending its control stream
    (half-close) does not end the response stream; cancelling the call does."""

    async def main() -> None:
        async with serving() as h:
            for method in (h.stub.StreamTelemetryBatched, h.stub.StreamTelemetry):
                controls = Controls(toggle(True))
                call = method(controls)
                await call.initial_metadata()
                controls.end()
                await wait_until(lambda: h.stream.stats()["controls"] >= 1)
                telemetry.emit("a.b", M, MD)
                assert await first_event_name(call) == "a.b"
                assert h.stream.stats()["attached"] == 1
                call.cancel()
                await wait_until(lambda: h.stream.stats()["attached"] == 0)
            # Events emitted meanwhile wait for the next stream.
            telemetry.emit("a.b", M, MD)
            call = h.stub.StreamTelemetryBatched(Controls())
            assert [name(e) for e in await read_events(call, 1)] == ["a.b"]
            call.cancel()

    run(main())


def test_a_client_that_sends_no_control_receives_events() -> None:
    async def main() -> None:
        async with serving() as h:
            for method in (h.stub.StreamTelemetryBatched, h.stub.StreamTelemetry):
                call = method(iter(()))
                await call.initial_metadata()
                await asyncio.sleep(0.05)  # the empty request stream has ended by now
                telemetry.emit("c.d", M, MD)
                assert await first_event_name(call) == "c.d"
                call.cancel()
                await wait_until(lambda: h.stream.stats()["attached"] == 0)

    run(main())


def test_a_new_stream_replaces_the_attached_one() -> None:
    async def main() -> None:
        async with serving() as h:
            old = h.stub.StreamTelemetryBatched(Controls())
            await old.initial_metadata()
            await wait_until(lambda: h.stream.stats()["streams"] == 1)
            new = h.stub.StreamTelemetryBatched(Controls())
            await new.initial_metadata()
            assert await asyncio.wait_for(old.read(), 2) is grpc.aio.EOF
            assert await old.code() == grpc.StatusCode.OK
            await wait_until(lambda: h.stream._wake_len == 1)
            emitted_at = time.monotonic()
            telemetry.emit("a.b", M, MD)
            assert [name(e) for e in await read_events(new, 1)] == ["a.b"]
            # Woken by the emit, not by the idle timer (the old session must not
            # have cleared the new one's "parked" flag).
            assert time.monotonic() - emitted_at < 0.5
            assert h.stream.stats()["attached"] == 1
            new.cancel()

    run(main())


def test_client_cancel_detaches_and_keeps_the_buffer() -> None:
    async def main() -> None:
        async with serving() as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            await call.initial_metadata()
            await wait_until(lambda: h.stream.stats()["attached"] == 1)
            call.cancel()
            await wait_until(lambda: h.stream.stats()["attached"] == 0)
            telemetry.emit("a.b", M, MD)
            assert h.stream.stats()["buffered"] == 1

    run(main())


def test_close_flushes_the_buffer_then_ends_the_stream() -> None:
    async def main() -> None:
        stream = TelemetryStream(max_buffer=5_000)
        async with serving(stream, max_batch=100) as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            await call.initial_metadata()
            await wait_until(lambda: stream.stats()["attached"] == 1)
            for i in range(1_000):
                stream.emit("a.b", {"i": i}, MD)
            closing = asyncio.ensure_future(stream.aclose(5))
            got = []
            while (batch := await asyncio.wait_for(call.read(), 2)) is not grpc.aio.EOF:
                got.extend(measurements(e)["i"] for e in batch.events)
            assert got == list(range(1_000))
            assert await call.code() == grpc.StatusCode.OK
            assert await closing is True
            assert stream.stats()["sent"] == 1_000 and stream.stats()["buffered"] == 0
            # A closed stream refuses new consumers.
            late = h.stub.StreamTelemetryBatched(Controls())
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await late.read()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    run(main())


def test_close_without_a_consumer_returns_at_once() -> None:
    async def main() -> None:
        stream = TelemetryStream()
        assert await stream.aclose(0.1) is True

    run(main())


def test_oversized_events_are_cut_into_frames_or_dropped() -> None:
    async def main() -> None:
        stream = TelemetryStream(max_frame_bytes=20_000, max_batch_bytes=10_000)
        blob = "x" * 3_000
        for i in range(6):
            stream.emit("big.one", {"i": i}, {"blob": blob})
        stream.emit("huge.one", {}, {"blob": "y" * 30_000})
        stream.emit("after.huge", {}, {})
        async with serving(stream) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            batches = await read_batches(call, 7)
            assert all(b.ByteSize() <= 10_000 for b in batches)
            assert len(batches) >= 2
            events = [e for b in batches for e in b.events]
            assert [name(e) for e in events] == ["big.one"] * 6 + ["after.huge"]
            assert stream.stats()["dropped"] == 1
            call.cancel()

    run(main())


def test_an_event_that_cannot_be_encoded_is_dropped_not_fatal() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    async def main() -> None:
        stream = TelemetryStream()
        stream.emit("a.first", M, MD)
        stream.emit("a.list", M, {"l": [1, 2]})  # unhashable: encoded the slow way
        stream.emit("a.bad", M, {"x": Unprintable()})  # cannot be encoded at all
        stream.emit("a.last", M, MD)
        async with serving(stream) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            events = await read_events(call, 3)
            assert [name(e) for e in events] == ["a.first", "a.list", "a.last"]
            assert events[1].metadata["l"] == "[1, 2]"
            await wait_until(lambda: stream.stats()["sent"] == 3)
            assert stream.stats()["dropped"] == 1 and stream.stats()["emitted"] == 4
            call.cancel()

    run(main())


# --- coalescing (max_delay) ------------------------------------------------------------


def test_events_within_max_delay_travel_in_one_frame() -> None:
    async def main() -> None:
        async with serving(TelemetryStream(max_delay=0.5)) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            await call.initial_metadata()
            await wait_until(lambda: h.stream._wake_len == 1)

            def emit_spread() -> None:
                for i in range(10):
                    telemetry.emit("a.b", {"n": i}, MD)
                    time.sleep(0.002)

            await asyncio.to_thread(emit_spread)
            (batch,) = await read_batches(call, 10)
            assert [measurements(e)["n"] for e in batch.events] == list(range(10))
            call.cancel()

    run(main())


def test_a_full_batch_goes_at_once_without_waiting_for_max_delay() -> None:
    async def main() -> None:
        # If the full batch waited for max_delay (9 s), read_batches' 5 s would fail.
        async with serving(TelemetryStream(max_delay=9.0), max_batch=5) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            await call.initial_metadata()
            await wait_until(lambda: h.stream._wake_len == 1)
            for i in range(5):
                telemetry.emit("a.b", {"n": i}, MD)
            (batch,) = await read_batches(call, 5, timeout=5.0)
            assert len(batch.events) == 5
            call.cancel()

    run(main())


def test_a_full_buffer_goes_at_once_when_it_is_smaller_than_a_batch() -> None:
    async def main() -> None:
        # max_buffer 5 < max_batch 100: the buffer can never hold a full
        # batch, so "full" is the buffer; waiting for max_delay (9 s) with a
        # full buffer would drop every event emitted meanwhile.
        async with serving(TelemetryStream(max_buffer=5, max_delay=9.0), max_batch=100) as h:
            call = h.stub.StreamTelemetryBatched(Controls())
            await call.initial_metadata()
            await wait_until(lambda: h.stream._wake_len == 1)
            for i in range(5):
                telemetry.emit("a.b", {"n": i}, MD)
            (batch,) = await read_batches(call, 5, timeout=5.0)
            assert len(batch.events) == 5
            call.cancel()

    run(main())


def counting_wakes(stream: TelemetryStream) -> tuple[TelemetryStream, list[int]]:
    """``stream`` with every wake of its consumer recorded in the list."""
    wakes: list[int] = []
    real_wake = stream._wake
    stream._wake = lambda: (wakes.append(1), real_wake())  # type: ignore[method-assign]
    return stream, wakes


async def parked_call(h: Harness) -> Any:
    """A batched call whose consumer waits for the first event."""
    call = h.stub.StreamTelemetryBatched(Controls())
    await call.initial_metadata()
    await wait_until(lambda: h.stream._wake_len == 1)
    return call


def test_the_emitting_thread_wakes_the_loop_only_when_it_must() -> None:
    async def main() -> None:
        stream, wakes = counting_wakes(TelemetryStream(max_delay=9.0))
        async with serving(stream, max_batch=100) as h:
            call = await parked_call(h)

            def emit(n: int) -> None:
                for _ in range(n):
                    telemetry.emit("a.b", M, MD)

            # Empty -> non-empty wakes the consumer, which then lingers: the
            # next 49 emits are appends only.
            await asyncio.to_thread(emit, 50)
            await wait_until(lambda: stream._wake_len == 100)
            assert len(wakes) == 1
            # Reaching a full batch wakes it once more, and the batch goes.
            await asyncio.to_thread(emit, 50)
            (batch,) = await read_batches(call, 100)
            assert len(batch.events) == 100 and len(wakes) == 2
            call.cancel()

    run(main())


def test_a_busy_stream_takes_the_next_events_on_a_timer_without_a_wake() -> None:
    async def main() -> None:
        stream, wakes = counting_wakes(TelemetryStream(max_delay=1.0))
        async with serving(stream, max_batch=100) as h:
            call = await parked_call(h)
            for i in range(3):
                telemetry.emit("a.b", {"n": i}, MD)
            (first,) = await read_batches(call, 3)
            # A frame of several events: the stream waits one max_delay for
            # more (a timer) rather than parking for a wake per frame.
            await wait_until(lambda: stream._wake_len == 100)
            for i in range(3, 5):
                telemetry.emit("a.b", {"n": i}, MD)
            (second,) = await read_batches(call, 2)
            assert [measurements(e)["n"] for e in second.events] == [3, 4]
            assert len(first.events) == 3 and len(wakes) == 1
            call.cancel()

    run(main())


def test_the_linger_timers_aim_a_millisecond_before_max_delay() -> None:
    """The loop's timers fire up to 1 ms late (epoll counts whole ms), so the
    stream arms them 1 ms early: no event waits longer than max_delay."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        armed: list[float] = []
        real_call_later = loop.call_later

        def call_later(delay: float, *args: Any, **kwargs: Any) -> Any:
            if 0.1 < delay < 1.0:  # the linger timers (totals_interval is 1 s)
                armed.append(delay)
            return real_call_later(delay, *args, **kwargs)

        loop.call_later = call_later  # type: ignore[method-assign]
        async with serving(TelemetryStream(max_delay=0.5), max_batch=100) as h:
            call = await parked_call(h)
            for i in range(3):
                telemetry.emit("a.b", {"n": i}, MD)
            (first,) = await read_batches(call, 3)
            # The busy stream's timer, armed after that frame of several events.
            await wait_until(lambda: len(armed) >= 2)
            call.cancel()
        assert len(first.events) == 3
        assert all(0.49 < delay <= 0.499 for delay in armed), armed

    run(main())


def test_max_delay_is_bounded() -> None:
    for bad in (-0.001, 10.5, math.nan):
        with pytest.raises(ValueError):
            TelemetryStream(max_delay=bad)
