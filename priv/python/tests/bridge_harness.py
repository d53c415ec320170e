"""Helpers for tests that talk to a real in-process ``grpc.aio`` BridgeService."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

import grpc_server
from snakepit_bridge import demo_tools, telemetry  # noqa: F401 (the tests call demo tools)
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend
from snakepit_bridge.telemetry.stream import TelemetryStream

#: The token of the test workers (any 22+ visible ASCII characters will do).
TOKEN = "test-token-0123456789abcdef"


def bearer(token: str = TOKEN) -> tuple[tuple[str, str], ...]:
    """The metadata of an authenticated call."""
    return (("authorization", f"Bearer {token}"),)


def _with_token(details: Any, token: str) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *bearer(token))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


# grpc.aio files each client interceptor under one kind only: one class per kind.
class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self.token), request)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self.token), requests)


def authed_channel(port: int, token: str = TOKEN) -> grpc.aio.Channel:
    """A channel whose every call carries ``token`` (as GRPCWorker's do)."""
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=[_UnaryUnary(token), _StreamStream(token)]
    )


@dataclass
class Harness:
    stream: TelemetryStream
    port: int
    server: Any
    servicer: grpc_server.BridgeService
    channel: grpc.aio.Channel
    stub: pb_grpc.BridgeServiceStub


@asynccontextmanager
async def serving(
    stream: TelemetryStream | None = None,
    *,
    max_batch: int = 512,
    install_backend: bool = True,
    token: str | None = None,
) -> AsyncIterator[Harness]:
    """A started server on 127.0.0.1:0 plus a client channel to it. With
    ``install_backend`` the stream is also the active telemetry backend; with
    ``token`` the server requires it and the channel sends it."""
    stream = stream if stream is not None else TelemetryStream()
    if install_backend:
        telemetry.set_backend(GrpcBackend(stream))
    server, port, servicer = await grpc_server.start_server(
        telemetry_stream=stream, max_batch=max_batch, token=token
    )
    channel = (
        authed_channel(port, token) if token else grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    )
    try:
        yield Harness(stream, port, server, servicer, channel, pb_grpc.BridgeServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(0)


class Controls:
    """A request stream the test feeds: ``send`` a control, ``end`` half-closes."""

    def __init__(self, *initial: pb.TelemetryControl) -> None:
        self._queue: asyncio.Queue[pb.TelemetryControl | None] = asyncio.Queue()
        for control in initial:
            self.send(control)

    def send(self, control: pb.TelemetryControl) -> None:
        self._queue.put_nowait(control)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[pb.TelemetryControl]:
        while True:
            control = await self._queue.get()
            if control is None:
                return
            yield control


def toggle(enabled: bool) -> pb.TelemetryControl:
    return pb.TelemetryControl(toggle=pb.TelemetryToggle(enabled=enabled))


def sampling(rate: float, patterns: list[str] | None = None) -> pb.TelemetryControl:
    return pb.TelemetryControl(
        sampling=pb.TelemetrySamplingUpdate(sampling_rate=rate, event_patterns=patterns or [])
    )


def event_filter(
    allow: list[str] | None = None, deny: list[str] | None = None
) -> pb.TelemetryControl:
    return pb.TelemetryControl(filter=pb.TelemetryEventFilter(allow=allow or [], deny=deny or []))


def name(event: pb.TelemetryEvent) -> str:
    return ".".join(event.event_parts)


def measurements(event: pb.TelemetryEvent) -> dict[str, Any]:
    return {k: getattr(v, v.WhichOneof("value")) for k, v in event.measurements.items()}


async def read_batches(
    call: Any, events: int, timeout: float = 5.0
) -> list[pb.TelemetryEventBatch]:
    """Batches from a ``StreamTelemetryBatched`` call until ``events`` events came."""
    batches: list[pb.TelemetryEventBatch] = []
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < events:
        batch = await asyncio.wait_for(call.read(), max(deadline - time.monotonic(), 0.01))
        assert batch is not grpc.aio.EOF, f"stream ended after {seen} of {events} events"
        batches.append(batch)
        seen += len(batch.events)
    return batches


async def read_events(call: Any, events: int, timeout: float = 5.0) -> list[pb.TelemetryEvent]:
    return [e for b in await read_batches(call, events, timeout) for e in b.events]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def json_any(value: Any) -> Any:
    return grpc_server.encode_json(value)


def run(coro):  # noqa: ANN001, ANN201
    """Runs a test's coroutine with a 20 s bound."""
    return asyncio.run(asyncio.wait_for(coro, 20))


def request(tool_name: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
    """An ``ExecuteToolRequest`` with JSON-encoded ``params``."""
    return pb.ExecuteToolRequest(
        tool_name=tool_name,
        parameters={k: json_any(v) for k, v in (params or {}).items()},
        **kw,
    )


def result_of(response: pb.ExecuteToolResponse) -> Any:
    """The decoded JSON result of a successful call."""
    assert response.result.type_url == grpc_server.JSON_TYPE_URL
    return json.loads(response.result.value)
