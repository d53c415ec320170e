"""``snakepit.bridge.BridgeService``: Ping, ExecuteTool and both telemetry RPCs.

Telemetry of a call (all with the call's correlation id):
``python.call.start`` (``request_size``) ... ``tool.execution.start``,
whatever the tool emits, ``tool.execution.stop`` (or ``.exception``),
``tool.result_size`` (``bytes`` of the JSON result) ... ``python.call.stop``
(``response_size``; metadata ``result`` ``ok``/``error``). A failing tool
adds ``python.error.occurred`` (``error_type``, ``error_message``, the last
4 KiB of the ``traceback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from snakepit_bridge import telemetry, tools
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc
from snakepit_bridge.server.codec import decode_parameters, encode_json, error_message
from snakepit_bridge.telemetry.context import CORRELATION_HEADER
from snakepit_bridge.telemetry.otel import TRACEPARENT, remote_parent
from snakepit_bridge.telemetry.span import MAX_ERROR_MESSAGE_BYTES
from snakepit_bridge.telemetry.stream import DEFAULT_MAX_BATCH, TelemetryStream
from snakepit_bridge.telemetry.text import head_utf8, tail_utf8

#: The traceback of ``python.error.occurred`` keeps this many trailing UTF-8 bytes.
MAX_TRACEBACK_BYTES = MAX_ERROR_MESSAGE_BYTES

_log = logging.getLogger("snakepit.worker")


def _call_value(request: pb.ExecuteToolRequest, context: Any, header: str, key: str) -> str | None:
    """A caller-supplied value: the gRPC metadata ``header``, else the request
    metadata ``key``."""
    for name, value in context.invocation_metadata() or ():
        if name == header and value:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return request.metadata.get(key) or None


def correlation_id(request: pb.ExecuteToolRequest, context: Any) -> str | None:
    """From the gRPC metadata ``x-snakepit-correlation-id``, else the request
    metadata ``correlation_id``."""
    return _call_value(request, context, CORRELATION_HEADER, "correlation_id")


def traceparent(request: pb.ExecuteToolRequest, context: Any) -> str | None:
    """The caller's W3C trace context: gRPC metadata ``traceparent``, else the
    request metadata's."""
    return _call_value(request, context, TRACEPARENT, TRACEPARENT)


class BridgeService(pb_grpc.BridgeServiceServicer):
    """``snakepit.bridge.BridgeService``.

    ``raw_frames`` (default): the telemetry RPCs yield pre-encoded bytes, which
    needs the pass-through serializer of :func:`add_bridge_service`; with the
    generated ``add_BridgeServiceServicer_to_server`` pass ``raw_frames=False``.
    """

    def __init__(
        self,
        telemetry_stream: TelemetryStream,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        worker_id: str = "",
        raw_frames: bool = True,
    ) -> None:
        self.telemetry_stream = telemetry_stream
        self.max_batch = max_batch
        self.worker_id = worker_id
        self.raw_frames = raw_frames
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutting_down = False

    # Ping ---------------------------------------------------------------------

    async def Ping(self, request: pb.PingRequest, context: Any) -> pb.PingResponse:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        return pb.PingResponse(message=f"pong: {request.message}", server_time=now)

    # Telemetry ------------------------------------------------------------------

    async def StreamTelemetry(self, request_iterator: Any, context: Any) -> Any:
        frames = self.telemetry_stream.stream(request_iterator, context, raw=self.raw_frames)
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    async def StreamTelemetryBatched(self, request_iterator: Any, context: Any) -> Any:
        frames = self.telemetry_stream.stream_batched(
            request_iterator, context, self.max_batch, raw=self.raw_frames
        )
        async with contextlib.aclosing(frames):
            async for frame in frames:
                yield frame

    # ExecuteTool -------------------------------------------------------------------

    async def ExecuteTool(
        self, request: pb.ExecuteToolRequest, context: Any
    ) -> pb.ExecuteToolResponse:
        if self._shutting_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "worker is shutting down")
        self._calls += 1
        self._idle.clear()
        try:
            return await self._execute_tool(request, context)
        finally:
            self._calls -= 1
            if not self._calls:
                self._idle.set()

    async def _execute_tool(
        self, request: pb.ExecuteToolRequest, context: Any
    ) -> pb.ExecuteToolResponse:
        started = time.monotonic()
        name = request.tool_name
        cid = correlation_id(request, context)
        metadata = {"command": name, "tool": name}
        if request.session_id:
            metadata["session_id"] = request.session_id
        failure: Exception | None = None
        try:
            with (
                remote_parent(traceparent(request, context)),
                telemetry.span(
                    "python.call",
                    metadata,
                    cid,
                    start_measurements={"request_size": request.ByteSize()},
                ) as call,
            ):
                response, failure = await self._run_tool(request, name, cid)
                response.execution_time_ms = int((time.monotonic() - started) * 1000)
                if cid:
                    response.metadata["correlation_id"] = cid
                call.set_metadata("result", "ok" if response.success else "error")
                call.set_measurement("response_size", response.ByteSize())
                if failure is not None:
                    # The call span ends as python.call.exception with the
                    # tool's error type and message; the caller gets success=False.
                    raise failure
        except Exception as exc:
            if exc is not failure:
                raise
        return response

    async def _run_tool(
        self, request: pb.ExecuteToolRequest, name: str, cid: str | None
    ) -> tuple[pb.ExecuteToolResponse, Exception | None]:
        """Runs the tool: ``(response, None)``, or ``(failed response, error)``."""
        try:
            fn = tools.get(name)
            if fn is None:
                raise tools.ToolError(f"unknown tool {name!r}")
            ctx = tools.ToolContext(
                tool_name=name,
                correlation_id=cid,
                session_id=request.session_id,
                metadata=dict(request.metadata),
                binary_parameters=dict(request.binary_parameters),
            )
            params = decode_parameters(request.parameters)
            with telemetry.span("tool.execution", {"tool": name}):
                result = await tools.run(fn, params, ctx)
            packed = encode_json(result)
            telemetry.emit("tool.result_size", {"bytes": len(packed.value)}, {"tool": name})
            return pb.ExecuteToolResponse(success=True, result=packed), None
        except Exception as exc:
            message = error_message(exc)
            telemetry.emit(
                "python.error.occurred",
                {"system_time": time.time_ns(), "count": 1},
                {
                    "tool": name,
                    "command": name,
                    "error_type": type(exc).__name__,
                    "error_message": head_utf8(message, MAX_ERROR_MESSAGE_BYTES),
                    "traceback": tail_utf8(traceback.format_exc(), MAX_TRACEBACK_BYTES),
                },
            )
            _log.debug("tool %r failed: %s", name, message)
            return pb.ExecuteToolResponse(success=False, error_message=message), exc

    # Shutdown -----------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """From now on ``ExecuteTool`` answers ``UNAVAILABLE``."""
        self._shutting_down = True

    async def wait_idle(self, timeout: float) -> bool:
        """Waits until no ``ExecuteTool`` call is running; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _passthrough(message_class: Any) -> Any:
    serialize = message_class.SerializeToString

    def serializer(message: Any) -> bytes:
        return message if type(message) is bytes else serialize(message)

    return serializer


def add_bridge_service(servicer: BridgeService, server: Any) -> None:
    """Registers ``servicer`` like the generated ``add_BridgeServiceServicer_to_server``
    (methods and types from the service descriptor), except that streaming
    responses may also be pre-serialized ``bytes``."""
    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {}
    for method in service.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        factory = factories[(method.client_streaming, method.server_streaming)]
        serializer = (
            _passthrough(response_class)
            if method.server_streaming
            else response_class.SerializeToString
        )
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
            response_serializer=serializer,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(service.full_name, handlers)
