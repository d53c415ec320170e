#!/usr/bin/env python3
"""The Snakepit Python worker: ``BridgeService`` on a ``grpc.aio`` server.

::

    python priv/python/grpc_server.py --port 0 [--host 127.0.0.1] [--max-buffer 1024]
        [--max-batch 512] [--max-frame-bytes 4194304] [--worker-id ID]
        [--shutdown-grace 2.0] [--ignore-stdin] [--switch-interval 0.001]
        [--tool-module MODULE ...] [--demo-tools]

RPCs (``priv/proto/snakepit_bridge.proto``, package ``snakepit.bridge``):

* ``Ping`` -- ``PingResponse{message: "pong: <message>", server_time}``;
* ``ExecuteTool`` -- runs a tool of :mod:`snakepit_bridge.tools`; see below.
  ``--tool-module`` (repeatable) and the environment variable
  ``SNAKEPIT_TOOL_MODULES`` (comma-separated) name more modules to import at
  start-up; they register their tools with ``@snakepit_bridge.tools.tool``.
  Only ``ping`` is built in; ``--demo-tools`` loads
  :mod:`snakepit_bridge.demo_tools` (the demo's and the tests' tools);
* ``StreamTelemetry`` -- one ``TelemetryEvent`` per frame (the reference RPC);
* ``StreamTelemetryBatched`` -- ``TelemetryEventBatch`` frames (up to
  ``--max-batch`` events plus the worker's running totals).
  Both telemetry RPCs are served by one :class:`TelemetryStream` (buffer of
  ``--max-buffer`` events); a new stream replaces the one attached before. No
  frame exceeds ``--max-frame-bytes`` (the client's decoding limit; 4 MiB like
  the Rust side's default): an event that alone would is dropped and counted.

Telemetry backend: a :class:`GrpcBackend` feeding that stream, installed at
start-up, unless ``PYTHON_SNAKEPIT_TELEMETRY`` is ``stderr`` (``TELEMETRY:{json}``
lines on stderr) or ``off`` (no telemetry).

Readiness: once the port is bound and the server started, the worker prints
exactly one line to stdout and flushes it::

    SNAKEPIT_READY {"port": 50051, "pid": 12345}

(JSON with exactly the keys ``port`` -- the bound port, the chosen one when
``--port 0`` -- and ``pid``.) Nothing else is written to stdout; logs go to
stderr. If the port cannot be bound the worker exits with status 1 and no
ready line.

Lifecycle: the worker shuts down gracefully and exits with status 0 on SIGTERM
or SIGINT, when stdin reaches end-of-file (the Elixir port closes the pipe when
its owner or the BEAM dies; pass ``--ignore-stdin`` when starting the worker
with stdin at end-of-file, e.g. from ``/dev/null``), or when its parent process
goes away (``os.getppid()`` changes; checked every 0.5 s). Graceful shutdown:
new ``ExecuteTool`` calls are refused (``UNAVAILABLE``), calls in progress get
up to ``--shutdown-grace`` seconds, the telemetry stream sends what is buffered
and ends, then the server stops.

ExecuteTool encoding (as the reference Snakepit): each ``parameters`` value is a
``google.protobuf.Any`` with ``type_url`` ``type.googleapis.com/google.protobuf.StringValue``
and ``value`` the raw JSON bytes of the parameter; the result is encoded the
same way. ``success``, ``error_message`` (``"<ExceptionType>: <message>"``, or
just the message for an unknown tool, a bad parameter or a
:class:`~snakepit_bridge.tools.ToolError`) and ``execution_time_ms`` are set;
``metadata`` carries ``correlation_id`` when there is one. The correlation id
is taken from the gRPC metadata ``x-snakepit-correlation-id``, else the request
metadata ``correlation_id``.

Latency: the telemetry stream is drained by the server's event loop thread,
which competes for the GIL with the threads that run tools. Python hands the
GIL over every ``sys.getswitchinterval()`` seconds (5 ms by default), so a
CPU-bound tool thread could hold events back for that long, several times per
event. The worker sets it to ``--switch-interval`` (1 ms by default; ``0``
keeps Python's value), which cuts that delay about fivefold at a small cost in
GIL hand-overs (see ``bench/emit_bench.py``, ``latency_busy_*``).

Telemetry of a call (all with the call's correlation id):
``python.call.start`` (``request_size``) ... ``tool.execution.start``,
whatever the tool emits, ``tool.execution.stop`` (or ``.exception``),
``tool.result_size`` (``bytes`` of the JSON result) ... ``python.call.stop``
(``response_size``; metadata ``result`` ``ok``/``error``). A failing tool
adds ``python.error.occurred`` (``error_type``, ``error_message``, the last
4 KiB of the ``traceback``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
from google.protobuf import any_pb2, timestamp_pb2, wrappers_pb2  # noqa: E402

from snakepit_bridge import telemetry, tools  # noqa: E402, F401 (registers ping)
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb  # noqa: E402
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc  # noqa: E402
from snakepit_bridge.telemetry import manager  # noqa: E402
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend  # noqa: E402
from snakepit_bridge.telemetry.resources import GcTelemetry, ResourceSampler  # noqa: E402
from snakepit_bridge.telemetry.span import MAX_ERROR_MESSAGE_BYTES  # noqa: E402
from snakepit_bridge.telemetry.stream import TelemetryStream  # noqa: E402

__all__ = [
    "JSON_TYPE_URL",
    "READY_PREFIX",
    "BridgeService",
    "add_bridge_service",
    "decode_parameters",
    "encode_json",
    "main",
    "start_server",
]

#: The first word of the readiness line.
READY_PREFIX = "SNAKEPIT_READY"
#: ``Any.type_url`` of parameters and results (their ``value`` is raw JSON).
JSON_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"
#: gRPC metadata key that carries the correlation id.
CORRELATION_HEADER = "x-snakepit-correlation-id"
#: The traceback of ``python.error.occurred`` keeps this many trailing UTF-8 bytes.
MAX_TRACEBACK_BYTES = MAX_ERROR_MESSAGE_BYTES
PARENT_POLL_SECONDS = 0.5
#: ``sys.setswitchinterval`` of a worker (see "Latency" above).
DEFAULT_SWITCH_INTERVAL = 0.001

_log = logging.getLogger("snakepit.worker")


# --- ExecuteTool encoding ---------------------------------------------------------


class ParameterError(ValueError):
    """A parameter is not valid JSON."""


def decode_parameters(parameters: Any) -> dict[str, Any]:
    """``map<string, Any>`` -> ``dict``: each value's bytes are parsed as JSON.

    A value packed the protobuf way (a serialized ``StringValue`` holding JSON)
    is accepted too."""
    decoded: dict[str, Any] = {}
    for name, packed in parameters.items():
        try:
            decoded[name] = json.loads(packed.value)
            continue
        except ValueError:
            pass
        if packed.type_url == JSON_TYPE_URL:
            with contextlib.suppress(Exception):
                decoded[name] = json.loads(wrappers_pb2.StringValue.FromString(packed.value).value)
                continue
        raise ParameterError(f"parameter {name!r} is not JSON ({packed.value[:40]!r})")
    return decoded


def encode_json(value: Any) -> any_pb2.Any:
    """A JSON value as the reference's ``Any`` (raw JSON bytes); raises
    ``TypeError``/``ValueError`` for values JSON cannot carry (objects, NaN)."""
    data = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return any_pb2.Any(type_url=JSON_TYPE_URL, value=data.encode("utf-8"))


def _correlation_id(request: pb.ExecuteToolRequest, context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_HEADER and value:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return request.metadata.get("correlation_id") or None


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, tools.ToolError | ParameterError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _tail_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8", "replace")
    return data[-limit:].decode("utf-8", "ignore") if len(data) > limit else text


def _head_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


# --- the service --------------------------------------------------------------------


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
        max_batch: int = 512,
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
        correlation_id = _correlation_id(request, context)
        metadata = {"command": name, "tool": name}
        if request.session_id:
            metadata["session_id"] = request.session_id
        failure: Exception | None = None
        try:
            with telemetry.span(
                "python.call",
                metadata,
                correlation_id,
                start_measurements={"request_size": request.ByteSize()},
            ) as call:
                response, failure = await self._run_tool(request, name, correlation_id)
                response.execution_time_ms = int((time.monotonic() - started) * 1000)
                if correlation_id:
                    response.metadata["correlation_id"] = correlation_id
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
        self, request: pb.ExecuteToolRequest, name: str, correlation_id: str | None
    ) -> tuple[pb.ExecuteToolResponse, Exception | None]:
        """Runs the tool: ``(response, None)``, or ``(failed response, error)``."""
        try:
            fn = tools.get(name)
            if fn is None:
                raise tools.ToolError(f"unknown tool {name!r}")
            ctx = tools.ToolContext(
                tool_name=name,
                correlation_id=correlation_id,
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
            message = _error_message(exc)
            telemetry.emit(
                "python.error.occurred",
                {"system_time": time.time_ns(), "count": 1},
                {
                    "tool": name,
                    "command": name,
                    "error_type": type(exc).__name__,
                    "error_message": _head_utf8(message, MAX_ERROR_MESSAGE_BYTES),
                    "traceback": _tail_utf8(traceback.format_exc(), MAX_TRACEBACK_BYTES),
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


# The shortest interval between client pings the server accepts.
PERMITTED_PING_INTERVAL_MS = 1_000


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    telemetry_stream: TelemetryStream | None = None,
    max_batch: int = 512,
    worker_id: str = "",
) -> tuple[Any, int, BridgeService]:
    """Creates, binds and starts a server; returns ``(server, bound port, servicer)``.
    Installs no telemetry backend (the caller decides)."""
    server = grpc.aio.server(
        options=[
            # Fail to bind a port another process holds instead of sharing it.
            ("grpc.so_reuseport", 0),
            # Our NIF pings an idle telemetry stream to detect a dead peer
            # (GRPCWorker asks for every 10 s); grpcio's default policy
            # answers pings more often than every 5 minutes with GOAWAY
            # "too_many_pings", which tore idle streams down every ~40 s.
            ("grpc.http2.min_ping_interval_without_data_ms", PERMITTED_PING_INTERVAL_MS),
            ("grpc.http2.max_ping_strikes", 0),
        ]
    )
    servicer = BridgeService(
        telemetry_stream or TelemetryStream(), max_batch=max_batch, worker_id=worker_id
    )
    add_bridge_service(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise RuntimeError(f"could not bind {host}:{port}")
    await server.start()
    return server, bound, servicer


# --- the worker process ---------------------------------------------------------------


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: Any) -> None:
    """Blocks reading stdin (discarding it); end-of-file means the parent is gone."""
    try:
        fd = sys.stdin.fileno()
        while os.read(fd, 65536):
            pass
    except (OSError, ValueError, AttributeError):
        return  # no usable stdin: nothing to watch
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop, "stdin closed")


async def _watch_parent(initial_ppid: int, stop: Any) -> None:
    while True:
        await asyncio.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != initial_ppid:
            stop(f"parent process {initial_ppid} exited")
            return


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    initial_ppid = os.getppid()
    extra = [m for m in os.environ.get("SNAKEPIT_TOOL_MODULES", "").split(",") if m.strip()]
    if args.demo_tools:
        extra.append("snakepit_bridge.demo_tools")
    try:
        for module in [*extra, *args.tool_module]:
            importlib.import_module(module.strip())
    except Exception as exc:
        _log.error("cannot import tool module: %r", exc)
        return 1
    if args.switch_interval > 0:
        sys.setswitchinterval(args.switch_interval)
    stream = TelemetryStream(max_buffer=args.max_buffer, max_frame_bytes=args.max_frame_bytes)
    choice = manager.choice_from_env(os.environ.get(manager.ENV_VAR))
    if choice == "grpc":
        telemetry.set_backend(GrpcBackend(stream))
    elif choice == "stderr" and telemetry.get_backend() is None:
        from snakepit_bridge.telemetry.backends.stderr import StderrBackend

        telemetry.set_backend(StderrBackend())
    try:
        server, port, servicer = await start_server(
            args.host,
            args.port,
            telemetry_stream=stream,
            max_batch=args.max_batch,
            worker_id=args.worker_id,
        )
    except RuntimeError as exc:
        _log.error("cannot start: %s", exc)
        return 1

    stopping = asyncio.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            _log.info("shutting down: %s", reason)
            stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    if not args.ignore_stdin:
        threading.Thread(
            target=_watch_stdin, args=(loop, stop), name="stdin-watch", daemon=True
        ).start()
    watchdog = loop.create_task(_watch_parent(initial_ppid, stop))
    # Resource telemetry (memory, cpu, gc) is on unless --sample-interval-ms 0.
    gc_telemetry = GcTelemetry()
    sampler = None
    if args.sample_interval_ms > 0:
        gc_telemetry.install()
        sampler = ResourceSampler(args.sample_interval_ms / 1000).start()

    ready = json.dumps({"port": port, "pid": os.getpid()})
    sys.stdout.write(f"{READY_PREFIX} {ready}\n")
    sys.stdout.flush()
    _log.info(
        "worker %s listening on %s:%d (telemetry: %s)", args.worker_id, args.host, port, choice
    )

    await stopping.wait()
    watchdog.cancel()
    gc_telemetry.uninstall()
    if sampler is not None:
        sampler.stop()
    grace = max(args.shutdown_grace, 0.0)
    deadline = loop.time() + grace
    servicer.begin_shutdown()
    idle = await servicer.wait_idle(grace)
    await stream.aclose(max(deadline - loop.time(), 0.2))
    await server.stop(max(deadline - loop.time(), 0.2))
    telemetry.set_backend(None)
    _log.info("stopped (%s)", stream.stats())
    if not idle:
        # A tool thread cannot be interrupted, and asyncio.run would wait for it.
        _log.warning("tool calls still running after %.1f s; exiting anyway", grace)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Snakepit Python worker (BridgeService)")
    parser.add_argument("--port", type=int, default=0, help="0 = let the OS choose (default)")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--max-buffer", type=int, default=1024, help="telemetry events buffered")
    parser.add_argument("--max-batch", type=int, default=512, help="events per telemetry batch")
    parser.add_argument(
        "--max-frame-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="largest telemetry frame (the client's limit)",
    )
    parser.add_argument("--worker-id", default="", help="shown in logs")
    parser.add_argument(
        "--shutdown-grace", type=float, default=2.0, help="seconds for calls in progress"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=DEFAULT_SWITCH_INTERVAL,
        help="sys.setswitchinterval in seconds (0 = keep Python's default)",
    )
    parser.add_argument(
        "--demo-tools",
        action="store_true",
        help="load the demo and test tools (emit_events, fail, telemetry_demo, "
        "telemetry_state, emit_random); off by default",
    )
    parser.add_argument(
        "--tool-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE at start-up (it registers tools); repeatable",
    )
    parser.add_argument(
        "--sample-interval-ms",
        type=int,
        default=5000,
        help="memory/cpu sample interval; 0 turns memory, cpu and gc telemetry off (default 5000)",
    )
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="do not treat end-of-file on stdin as the parent going away",
    )
    args = parser.parse_args(argv)
    if args.max_buffer < 1 or args.max_batch < 1:
        parser.error("--max-buffer and --max-batch must be at least 1")
    if args.max_frame_bytes < 1024:
        parser.error("--max-frame-bytes must be at least 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("SNAKEPIT_LOG_LEVEL", "INFO").upper(),
        format=f"snakepit-worker[{os.getpid()}] %(levelname)s %(message)s",
    )
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
