"""The worker's end of the telemetry stream to Elixir.

::

    stream = TelemetryStream()                     # buffers up to 4096 events
    telemetry.set_backend(GrpcBackend(stream))     # emit() from any thread feeds it

    # in the BridgeService (grpc.aio) servicer:
    async def StreamTelemetryBatched(self, request_iterator, context):
        async for frame in stream.stream_batched(request_iterator, context):
            yield frame

Emit side (:meth:`TelemetryStream.emit`, any thread, must be cheap)
    A cached per-event-name verdict decides at once whether the event passes;
    only then is the event stored as a plain tuple
    ``(name, measurements, metadata, time.time_ns(), correlation_id)`` in a
    bounded buffer (default 4096 events). When the buffer is full the event is
    dropped and counted. Protobuf is never built here. The emitting thread wakes
    the consumer (one ``loop.call_soon_threadsafe``) only when it has to: when
    the buffer goes from empty to non-empty while the consumer is parked, or when
    it reaches a full batch while the consumer lingers (see *Coalescing*); every
    other emit is an append. Events emitted before any stream attaches wait in
    the buffer.

    The bound is checked without a lock, so threads emitting at the very same
    moment can overshoot it by at most one event each.

Stream side (:meth:`stream`, :meth:`stream_batched`, async generators on the
gRPC server's event loop)
    * Both send the response headers (``send_initial_metadata``) as soon as the
      RPC opens, so the client's open completes without waiting for an event.
    * A task reads the request stream concurrently and applies each
      ``TelemetryControl`` frame at once (see *Controls*).
    * *Coalescing*, as batching exporters do (OpenTelemetry's batch processor,
      Kafka's ``linger.ms``): a frame goes out when a batch is full (``max_batch``
      events) or when the oldest buffered event has waited ``max_delay`` seconds
      (5 ms by default; ``0`` sends at once). At steady rates that turns one gRPC
      message, one HTTP/2 frame and one wake-up per event on both sides into one
      per ``max_delay``; an event waits at most ``max_delay`` plus a loop turn.
      After a frame of several events the stream is busy: it waits one
      ``max_delay`` on a timer and takes what came, so at steady rates a frame
      costs one timer instead of a wake from the emitting thread plus a timer.
      The batched RPC sends up to ``max_batch`` events and about
      ``max_batch_bytes`` in one ``TelemetryEventBatch``; the stock RPC sends the
      coalesced events one message each. Every batch carries the running totals (``emitted_total``,
      ``dropped_total``, ``sampled_out_total``, ``filtered_out_total``,
      ``disabled_total``). When there is nothing to send, nothing is sent, except
      that an idle batched stream sends one batch without events when the totals
      changed in the last ``totals_interval`` seconds (1 s by default), so
      Elixir sees drops and sampling even when no event passes.
    * One consumer at a time: a stream that opens while another is attached
      *replaces* it. The old one ends at once (its RPC finishes with status OK)
      and the new one receives everything still buffered. That is what a
      reconnecting client needs: the old server-side call may linger until
      HTTP/2 notices the broken connection, and it must not keep the events.
    * A client that half-closes (ends its control stream, or never sends a
      control) keeps receiving events, as with the reference worker. The
      response stream ends when the call is cancelled (the client went away),
      the request stream breaks, the stream is replaced, or :meth:`close`;
      that also stops the reader. Events still buffered then stay for the next
      stream.
    * :meth:`close` lets the attached stream send everything buffered, then ends
      it; later emits are counted as dropped and later streams are refused with
      ``UNAVAILABLE``.

Controls (initially: enabled, sampling rate 1.0, no filter)
    * ``toggle(enabled)`` -- while off, events are counted in ``disabled`` and not kept;
    * ``sampling(rate, event_patterns)`` -- ``rate`` clamped to [0, 1] (NaN
      ignored); each event is kept with probability ``rate``; with patterns
      (``fnmatch`` globs on the Python name, e.g. ``python.*``) only matching events
      are sampled and the others always pass;
    * ``filter(allow, deny)`` -- globs; an event matching any ``deny`` pattern is
      filtered out; with a non-empty ``allow`` an event must match one of them.
    Order of the checks: closed, disabled, filter, sampling, buffer full.
    Events already buffered are not affected by a later control.

Counters (:meth:`stats`, running totals since the stream object was created)
    ``emitted`` (every emit call, before any decision) = ``sent`` + ``dropped`` +
    ``sampled_out`` + ``filtered_out`` + ``disabled`` + ``buffered`` + events in
    flight. ``dropped`` counts events lost in the worker: buffer full, emitted
    after :meth:`close`, too large for one frame (``max_frame_bytes``), not
    encodable (values no caller of the public ``emit`` can pass), or taken for a
    frame that could not be written because the RPC broke.

Frames: by default the generators yield protobuf messages, so they work with
the generated ``add_BridgeServiceServicer_to_server``. With ``raw=True`` they
yield the serialized bytes (encoded by :mod:`.wire`), which saves parsing and
re-serializing every frame; the server must then register a serializer that
passes bytes through (``grpc_server.add_bridge_service`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

from snakepit_bridge import catalog

from .frames import Frames
from .policy import Policy, as_patterns
from .wire import BATCH_TOTAL_TAGS, EventEncoder

__all__ = ["TelemetryStream"]

_log = logging.getLogger(__name__)

_time_ns = time.time_ns
_random = random.random

#: Events per frame of the stock (one event per message) RPC taken at once.
_STOCK_CHUNK = 64

#: How long the oldest buffered event may wait for a batch to fill (seconds).
#: The catalog's defaults (``priv/catalog/telemetry_catalog.json``), which the
#: Elixir side uses too.
DEFAULT_MAX_DELAY = catalog.defaults()["max_delay_ms"] / 1000
DEFAULT_MAX_BATCH = catalog.defaults()["max_batch_events"]
DEFAULT_MAX_FRAME_BYTES = catalog.defaults()["max_frame_bytes"]

#: How much earlier than ``max_delay`` the stream aims to send: the event
#: loop's timers fire up to a millisecond late (epoll counts whole
#: milliseconds and the loop rounds up), so aiming at ``max_delay`` itself
#: would let events wait longer than promised. At most half of ``max_delay``.
_TIMER_SLACK_NS = 1_000_000

#: Events a stream buffers by default: enough for one worker offered
#: 150,000 events/s to lose none while the emitting thread holds the GIL
#: (bench f9/f10; 1024 lost 1.4-3.8 %). About 2.5 MB at most, for small events.
DEFAULT_MAX_BUFFER = 4096

#: A buffer length no buffer reaches (nobody wants a wake-up).
_NEVER = 1 << 62

_TAG_DROPPED = BATCH_TOTAL_TAGS["dropped_total"]
_TAG_EMITTED = BATCH_TOTAL_TAGS["emitted_total"]
_TAG_SAMPLED_OUT = BATCH_TOTAL_TAGS["sampled_out_total"]
_TAG_FILTERED_OUT = BATCH_TOTAL_TAGS["filtered_out_total"]
_TAG_DISABLED = BATCH_TOTAL_TAGS["disabled_total"]
_TAG_SOURCE_ID = BATCH_TOTAL_TAGS["source_id"]
_TAG_AUTH_REJECTED = BATCH_TOTAL_TAGS["auth_rejected_total"]


class _Session:
    """One attached consumer (one RPC)."""

    __slots__ = ("done", "ended", "in_flight", "reason", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ended = False
        self.reason = ""
        self.waiter: asyncio.Future[str] | None = None
        self.in_flight = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.reason = reason
        _resolve(self.waiter, "ended")


def _resolve(future: asyncio.Future[Any] | None, value: Any) -> None:
    if future is not None and not future.done():
        future.set_result(value)


class TelemetryStream:
    """Bounded buffer of telemetry events plus the two streaming RPC handlers.

    See the module documentation for the full behaviour. ``max_buffer`` bounds
    the buffered events; ``max_frame_bytes`` is the largest frame the receiver
    accepts (the Rust side's ``max_frame_bytes``, 4 MiB by default; an event that
    alone does not fit is dropped); ``max_batch_bytes`` the size a batch aims
    to stay under; ``totals_interval`` how often an idle batched stream may send
    a batch with only changed totals (``0`` never).
    """

    def __init__(
        self,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_batch_bytes: int = 1024 * 1024,
        totals_interval: float = 1.0,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        if not 0.0 <= max_delay <= 10.0:
            raise ValueError("max_delay must be between 0 and 10 seconds")
        #: How long the oldest buffered event may wait for a batch to fill.
        self.max_delay = float(max_delay)
        self.max_buffer = max_buffer
        self.max_frame_bytes = max_frame_bytes
        self.max_batch_bytes = min(max_batch_bytes, max_frame_bytes)
        self.totals_interval = totals_interval
        #: Names this stream's running totals on the wire: Elixir adds the
        #: totals of a restarted worker to the old ones instead of mixing them.
        self.source_id = random.getrandbits(63) or 1
        self._buffer: deque[tuple[str, dict, dict, int, str | None]] = deque()
        self._policy = Policy()
        self._lock = threading.Lock()
        # Counted under _lock. "emitted" is derived (see stats()).
        self._counts = {
            "dropped": 0,
            "sampled_out": 0,
            "filtered_out": 0,
            "disabled": 0,
            "sent": 0,
            "taken": 0,
            "controls": 0,
            "streams": 0,
            "auth_rejected": 0,
        }
        # Takes events from the buffer into frames within the limits.
        self._frames = Frames(self, max_frame_bytes, self.max_batch_bytes)
        # The buffer length at which an emit wakes the consumer: 1 while it
        # waits for any event, a full batch while it lingers, _NEVER otherwise.
        self._wake_len = _NEVER
        self._session: _Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    # --- emit side (any thread) ---------------------------------------------

    def emit(
        self,
        event_name: str,
        measurements: dict[str, int | float],
        metadata: dict[str, str],
        correlation_id: str | None = None,
    ) -> None:
        """Queues one event (see the module docs); never blocks.

        ``measurements`` and ``metadata`` are copied (they may be the caller's
        own dicts). Values are expected as the public ``emit`` delivers them
        (numbers; strings), the encoder copes with others."""
        policy = self._policy
        verdict = policy.get(event_name)
        if verdict is not True:
            if verdict is None:
                verdict = policy.decide(event_name)
            if verdict is not True:
                if type(verdict) is float:
                    if _random() >= verdict:
                        self._count("sampled_out")
                        return
                else:
                    self._count(verdict)  # type: ignore[arg-type]
                    return
        buffer = self._buffer
        if len(buffer) < self.max_buffer:
            buffer.append(
                (event_name, measurements.copy(), metadata.copy(), _time_ns(), correlation_id)
            )
            if len(buffer) >= self._wake_len:
                self._wake_len = _NEVER
                self._wake()
        else:
            self._count("dropped")

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        session = self._session
        if session is not None:
            _resolve(session.waiter, "event")

    # --- controls -------------------------------------------------------------

    def toggle(self, enabled: bool) -> None:
        """Turns telemetry on or off (events emitted while off are counted in ``disabled``)."""
        self._install(enabled=bool(enabled))

    def update_sampling(self, rate: float, patterns: Iterable[str] = ()) -> None:
        """Keeps each (matching) event with probability ``rate`` (clamped to [0, 1];
        NaN is ignored). With ``patterns`` only events matching one of the globs are
        sampled; others pass."""
        rate = float(rate)
        if math.isnan(rate):
            _log.warning("telemetry sampling rate NaN ignored")
            return
        self._install(rate=min(max(rate, 0.0), 1.0), patterns=as_patterns(patterns))

    def update_filter(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        """Event-name globs: ``deny`` wins; a non-empty ``allow`` admits only matches."""
        self._install(allow=as_patterns(allow), deny=as_patterns(deny))

    def apply_control(self, control: Any) -> None:
        """Applies one ``snakepit.bridge.TelemetryControl`` message."""
        kind = control.WhichOneof("control")
        if kind == "toggle":
            self.toggle(control.toggle.enabled)
        elif kind == "sampling":
            self.update_sampling(control.sampling.sampling_rate, control.sampling.event_patterns)
        elif kind == "filter":
            self.update_filter(control.filter.allow, control.filter.deny)
        else:
            _log.debug("empty TelemetryControl ignored")
            return
        self._count("controls")

    def settings(self) -> dict[str, Any]:
        """The settings in force: ``enabled``, ``sampling_rate``,
        ``sampling_patterns``, ``allow``, ``deny``, ``closed``."""
        return self._policy.settings()

    # The reference package's TelemetryStream attributes, read-only here
    # (controls change them): code written for it runs unchanged.

    @property
    def enabled(self) -> bool:
        """False while toggled off."""
        return self._policy.enabled

    @property
    def sampling_rate(self) -> float:
        """The sampling rate in force (1.0: every event)."""
        return self._policy.rate

    @property
    def dropped_count(self) -> int:
        """Events dropped so far (buffer full, closed, lost with a broken call)."""
        with self._lock:
            return self._counts["dropped"]

    def _install(self, **changes: Any) -> None:
        with self._lock:  # two controls at once must not lose one another's change
            self._policy = self._policy.replace(**changes)

    # --- counters ---------------------------------------------------------------

    def count_rejected_call(self, method: str = "") -> None:
        """Counts a call the worker refused (no or a wrong token); the count
        travels with the running totals (``auth_rejected_total``)."""
        with self._lock:
            self._counts["auth_rejected"] += 1

    def stats(self) -> dict[str, int]:
        """Running totals since creation: ``emitted``, ``sent``, ``dropped``,
        ``sampled_out``, ``filtered_out``, ``disabled``; plus ``buffered`` (now),
        ``controls`` (applied), ``streams`` (opened), ``auth_rejected`` (calls refused
        for a missing or wrong token) and ``attached`` (0 or 1)."""
        with self._lock:
            counts = dict(self._counts)
            buffered = len(self._buffer) + len(self._frames.carry)
        taken = counts.pop("taken")
        counts["emitted"] = (
            taken
            + buffered
            + counts["dropped"]
            + counts["sampled_out"]
            + counts["filtered_out"]
            + counts["disabled"]
        )
        counts["buffered"] = buffered
        counts["attached"] = int(self._session is not None)
        return counts

    def _totals(self) -> tuple[tuple[bytes, int], ...]:
        """The running totals of a batch as ``(tag, value)`` pairs (once per frame)."""
        with self._lock:
            c = self._counts
            dropped, sampled, filtered, disabled = (
                c["dropped"],
                c["sampled_out"],
                c["filtered_out"],
                c["disabled"],
            )
            emitted = (
                c["taken"]
                + len(self._buffer)
                + len(self._frames.carry)
                + dropped
                + sampled
                + filtered
                + disabled
            )
            rejected = c["auth_rejected"]
        totals = (
            (_TAG_DROPPED, dropped),
            (_TAG_EMITTED, emitted),
            (_TAG_SAMPLED_OUT, sampled),
            (_TAG_FILTERED_OUT, filtered),
            (_TAG_DISABLED, disabled),
            (_TAG_SOURCE_ID, self.source_id),
        )
        # Sent only once there is one: a peer that predates the field never sees it.
        return (*totals, (_TAG_AUTH_REJECTED, rejected)) if rejected else totals

    # --- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Lets the attached stream send what is buffered, then ends it; later
        emits are dropped (counted) and later streams refused. Idempotent; any
        thread. See :meth:`aclose` to wait for the flush."""
        if self._closing:
            return
        self._closing = True
        self._install(closed=True)
        self._wake_len = _NEVER
        self._wake()

    async def aclose(self, timeout: float = 5.0) -> bool:
        """:meth:`close`, then waits (at most ``timeout`` seconds) until the
        attached stream has sent everything and ended. True if it did (or no
        stream was attached)."""
        self.close()
        session = self._session
        if session is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(session.done), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._closing

    # --- stream side (the gRPC server's event loop) ---------------------------------

    async def stream(
        self, request_iterator: Any, context: Any, *, raw: bool = False
    ) -> AsyncIterator[Any]:
        """Handler body of the stock ``StreamTelemetry`` RPC: one
        ``TelemetryEvent`` per event (its serialized bytes when ``raw``)."""
        from snakepit_bridge.proto import snakepit_bridge_pb2 as pb

        parse = pb.TelemetryEvent.FromString
        frames = self._run(request_iterator, context, batched=False, max_batch=0)
        async with contextlib.aclosing(frames):
            async for session, bodies in frames:
                for index, body in enumerate(bodies):
                    session.in_flight = len(bodies) - index
                    yield body if raw else parse(body)
                    session.in_flight -= 1
                    self._count("sent")

    async def stream_batched(
        self,
        request_iterator: Any,
        context: Any,
        max_batch: int = DEFAULT_MAX_BATCH,
        *,
        raw: bool = False,
    ) -> AsyncIterator[Any]:
        """Handler body of ``StreamTelemetryBatched``: ``TelemetryEventBatch``
        frames of up to ``max_batch`` events plus the running totals (the
        serialized bytes when ``raw``)."""
        from snakepit_bridge.proto import snakepit_bridge_pb2 as pb

        parse = pb.TelemetryEventBatch.FromString
        max_batch = max(int(max_batch), 1)
        frames = self._run(request_iterator, context, batched=True, max_batch=max_batch)
        async with contextlib.aclosing(frames):
            async for session, (frame, count) in frames:
                session.in_flight = count
                yield frame if raw else parse(frame)
                session.in_flight = 0
                if count:
                    self._count("sent", count)

    async def _run(
        self, request_iterator: Any, context: Any, *, batched: bool, max_batch: int
    ) -> AsyncIterator[Any]:
        """Attaches, reads controls, and yields ``(session, payload)`` where the
        payload is a list of event bodies (stock) or ``(batch bytes, event count)``."""
        loop = asyncio.get_running_loop()
        if self._closing:
            await _abort(context, "telemetry stream is closed (worker shutting down)")
            return
        await _send_headers(context)
        session = self._attach(loop)
        reader = loop.create_task(self._read_controls(request_iterator, session))
        last_totals = None
        linger_ns = int(self.max_delay * 1e9)
        linger_ns -= min(_TIMER_SLACK_NS, linger_ns // 2)
        # A frame goes at once when it is full, or when the buffer is: a
        # buffer smaller than a batch never holds one, and a full buffer
        # drops what comes while the stream lingers.
        full = min(max_batch if batched else _STOCK_CHUNK, self.max_buffer)
        # After a frame of several events the stream is busy: it waits one
        # max_delay (a timer) and takes what came, instead of parking for the
        # next event (a wake from the emitting thread, then a linger timer).
        ticked = False
        try:
            while not session.ended:
                if linger_ns and not self._closing and not ticked:
                    wait = self._linger_for(linger_ns, full)
                    if wait > 0.0:
                        await self._park(loop, session, want=full, timeout=wait)
                        continue
                ticked = False
                if batched:
                    frame, count, totals = self._frames.batch(max_batch, self._totals)
                    if count:
                        last_totals = totals
                        yield session, (frame, count)
                else:
                    bodies = self._frames.events(_STOCK_CHUNK)
                    count = len(bodies)
                    if bodies:
                        yield session, bodies
                if count:
                    if count > 1 and linger_ns and not self._closing and not self._pending():
                        await self._park(loop, session, want=full, timeout=linger_ns / 1e9)
                        ticked = True
                    continue
                if self._closing:
                    break
                interval = self.totals_interval if batched else 0.0
                woke = await self._park(loop, session, want=1, timeout=interval)
                if woke == "timeout" and batched:
                    totals = self._totals()
                    if totals != last_totals:
                        last_totals = totals
                        yield session, (b"".join(EventEncoder.totals(totals)), 0)
        finally:
            reader.cancel()
            if session.in_flight:  # taken for a frame the broken RPC did not take
                with self._lock:
                    self._counts["dropped"] += session.in_flight
                    self._counts["taken"] -= session.in_flight
                session.in_flight = 0
            self._detach(session)

    def _pending(self) -> int:
        return len(self._frames.carry) + len(self._buffer)

    def _linger_for(self, linger_ns: int, full: int) -> float:
        """Seconds to wait before taking a frame: 0 when nothing is buffered
        (the consumer parks for the first event), a batch is full, or the
        oldest event has waited ``max_delay``."""
        carry, buffer = self._frames.carry, self._buffer
        pending = len(carry) + len(buffer)
        if pending == 0 or pending >= full:
            return 0.0
        try:
            oldest = carry[0][3] if carry else buffer[0][3]
        except IndexError:  # taken meanwhile (a replaced stream's last turn)
            return 0.0
        # Bounded by max_delay whatever the wall clock did since the emit.
        left = min(oldest + linger_ns - _time_ns(), linger_ns)
        return left / 1e9 if left > 200_000 else 0.0

    async def _park(
        self, loop: asyncio.AbstractEventLoop, session: _Session, *, want: int, timeout: float
    ) -> str:
        """Waits until ``want`` events are buffered, ``timeout`` seconds pass
        (``0``: no limit) or the session ends."""
        waiter: asyncio.Future[str] = loop.create_future()
        session.waiter = waiter
        self._wake_len = want
        # An emit may have appended between our last look and setting _wake_len.
        if self._pending() >= want or session.ended or self._closing:
            self._unpark(session)
            return "event"
        timer = None
        if timeout > 0:
            timer = loop.call_later(timeout, _resolve, waiter, "timeout")
        try:
            return await waiter
        finally:
            self._unpark(session)
            if timer is not None:
                timer.cancel()

    def _unpark(self, session: _Session) -> None:
        session.waiter = None
        # A replaced session must not clear the wish of the one that replaced it.
        if self._session is session:
            self._wake_len = _NEVER

    def _attach(self, loop: asyncio.AbstractEventLoop) -> _Session:
        previous = self._session
        if previous is not None:
            previous.end("replaced by a new stream")
        session = _Session(loop)
        self._loop = loop
        self._session = session
        self._count("streams")
        return session

    def _detach(self, session: _Session) -> None:
        session.end(session.reason or "finished")
        if self._session is session:
            self._session = None
            self._wake_len = _NEVER
        _resolve(session.done, None)

    async def _read_controls(self, request_iterator: Any, session: _Session) -> None:
        # A clean end of the request stream is a half-close: the client sends
        # no more controls but still reads events (as the reference worker
        # does). Only a broken request stream ends the session; a client that
        # goes away cancels the RPC, which ends the response stream itself.
        try:
            async for control in request_iterator:
                if session.ended:
                    return
                try:
                    self.apply_control(control)
                except Exception:
                    _log.exception("bad TelemetryControl ignored")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the RPC broke
            session.end(f"request stream failed: {exc!r}")


async def _send_headers(context: Any) -> None:
    send = getattr(context, "send_initial_metadata", None)
    if send is None:
        return
    with contextlib.suppress(Exception):  # e.g. already sent, or the call is gone
        await send(())


async def _abort(context: Any, message: str) -> None:
    import grpc

    await context.abort(grpc.StatusCode.UNAVAILABLE, message)
