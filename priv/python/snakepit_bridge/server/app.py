"""The worker process: command line, server wiring, the ready line, shutdown.

See ``priv/python/grpc_server.py`` for the command line and the contract
with ``Snakepit.GRPCWorker`` (ready line, lifecycle, authentication).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from snakepit_bridge import telemetry
from snakepit_bridge.server import auth, lifecycle, logs
from snakepit_bridge.server.service import BridgeService, add_bridge_service
from snakepit_bridge.telemetry import manager, wire
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend
from snakepit_bridge.telemetry.resources import GcTelemetry, ResourceSampler
from snakepit_bridge.telemetry.stream import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_FRAME_BYTES,
    TelemetryStream,
)

#: The first word of the readiness line.
READY_PREFIX = "SNAKEPIT_READY"
#: ``sys.setswitchinterval`` of a worker (see "Latency" in grpc_server.py).
DEFAULT_SWITCH_INTERVAL = 0.001
#: The shortest interval between client pings the server accepts.
PERMITTED_PING_INTERVAL_MS = 1_000

_log = logging.getLogger("snakepit.worker")


@dataclass(frozen=True)
class TlsFiles:
    """The worker's TLS material (PEM bytes): its certificate and key, and
    the CA its clients' certificates must chain to (``None``: no client
    certificate asked for)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TlsFiles | None:
        if not args.tls_cert:
            return None
        client_ca = Path(args.tls_client_ca).read_bytes() if args.tls_client_ca else None
        return cls(Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes(), client_ca)

    def credentials(self) -> Any:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    telemetry_stream: TelemetryStream | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    worker_id: str = "",
    token: str | None = None,
    tls: TlsFiles | None = None,
) -> tuple[Any, int, BridgeService]:
    """Creates, binds and starts a server; returns ``(server, bound port, servicer)``.
    With ``token``, every call must carry it (:mod:`.auth`); with ``tls`` the
    port speaks TLS (and requires client certificates if ``tls`` names a
    client CA). Installs no telemetry backend (the caller decides)."""
    stream = telemetry_stream or TelemetryStream()
    interceptors = []
    if token is not None:
        interceptors.append(auth.TokenAuthInterceptor(token, stream.count_rejected_call))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            # Fail to bind a port another process holds instead of sharing it.
            ("grpc.so_reuseport", 0),
            # Our NIF pings an idle telemetry stream to detect a dead peer
            # (GRPCWorker asks for every 10 s); grpcio's default policy
            # answers pings more often than every 5 minutes with GOAWAY
            # "too_many_pings", which tore idle streams down every ~40 s.
            ("grpc.http2.min_ping_interval_without_data_ms", PERMITTED_PING_INTERVAL_MS),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    servicer = BridgeService(stream, max_batch=max_batch, worker_id=worker_id)
    add_bridge_service(servicer, server)
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, tls.credentials())
        if tls
        else server.add_insecure_port(address)
    )
    if not bound:
        raise RuntimeError(f"could not bind {host}:{port}")
    await server.start()
    return server, bound, servicer


def _import_tools(args: argparse.Namespace) -> None:
    extra = [m for m in os.environ.get("SNAKEPIT_TOOL_MODULES", "").split(",") if m.strip()]
    if args.demo_tools:
        extra.append("snakepit_bridge.demo_tools")
    for module in [*extra, *args.tool_module]:
        try:
            importlib.import_module(module.strip())
        except Exception as exc:
            raise ToolImportError(module.strip()) from exc


class ToolImportError(Exception):
    """A tool module (``--tool-module``, an adapter) failed to import."""

    def __init__(self, module: str) -> None:
        super().__init__(module)
        self.module = module


def _not_found(error: BaseException | None, module: str) -> bool:
    return isinstance(error, ModuleNotFoundError) and (
        error.name is not None and module.startswith(error.name)
    )


def _install_backend(stream: TelemetryStream) -> str:
    choice = manager.choice_from_env(os.environ.get(manager.ENV_VAR))
    if choice == "grpc":
        telemetry.set_backend(GrpcBackend(stream))
    elif choice == "stderr" and telemetry.get_backend() is None:
        from snakepit_bridge.telemetry.backends.stderr import StderrBackend

        telemetry.set_backend(StderrBackend())
    return choice


async def serve(args: argparse.Namespace, token: str | None, tls: TlsFiles | None = None) -> int:
    loop = asyncio.get_running_loop()
    initial_ppid = os.getppid()
    try:
        _import_tools(args)
    except ToolImportError as exc:
        cause = exc.__cause__
        _log.error(
            "cannot import tool module %r: %s: %s; searched sys.path %s",
            exc.module,
            type(cause).__name__,
            cause,
            sys.path,
            # Where it failed, unless the module simply is not on the path.
            exc_info=None if _not_found(cause, exc.module) else cause,
        )
        return 1
    if args.switch_interval > 0:
        sys.setswitchinterval(args.switch_interval)
    stream = TelemetryStream(
        max_buffer=args.max_buffer,
        max_frame_bytes=args.max_frame_bytes,
        max_delay=args.max_delay_ms / 1000,
    )
    choice = _install_backend(stream)
    try:
        server, port, servicer = await start_server(
            args.host,
            args.port,
            telemetry_stream=stream,
            max_batch=args.max_batch,
            worker_id=args.worker_id,
            token=token,
            tls=tls,
        )
    except RuntimeError as exc:
        _log.error("cannot start: %s", exc)
        return 1

    stopping = asyncio.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            _log.info("shutting down: %s", reason)
            stopping.set()

    watchdog = lifecycle.watch(stop, initial_ppid=initial_ppid, watch_stdin=not args.ignore_stdin)
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
        "worker %s listening on %s:%d (telemetry: %s, encoder: %s, auth: %s, tls: %s)",
        args.worker_id,
        args.host,
        port,
        choice,
        "python" if wire.NATIVE is None else "native",
        "token" if token else "off",
        ("mutual" if tls.client_ca else "server") if tls else "off",
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
    parser.add_argument(
        "--max-buffer",
        type=int,
        default=DEFAULT_MAX_BUFFER,
        help=f"telemetry events buffered (default {DEFAULT_MAX_BUFFER})",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"events per telemetry batch (default {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument(
        "--max-frame-bytes",
        type=int,
        default=DEFAULT_MAX_FRAME_BYTES,
        help=f"largest telemetry frame (the client's limit; default {DEFAULT_MAX_FRAME_BYTES})",
    )
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=DEFAULT_MAX_DELAY * 1000,
        help="longest an event waits for its telemetry batch to fill "
        f"(default {DEFAULT_MAX_DELAY * 1000:g}; 0 sends each event at once)",
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
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--auth-token-stdin",
        action="store_true",
        help="read the worker token from the first line of stdin (what GRPCWorker does)",
    )
    who.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help="read the worker token from PATH (mode 0600, this user's) and delete it",
    )
    who.add_argument(
        "--no-auth",
        action="store_true",
        help="DEVELOPMENT ONLY: accept calls from any local process, without a token",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.max_buffer < 1 or args.max_batch < 1:
        parser.error("--max-buffer and --max-batch must be at least 1")
    if not 0 <= args.max_delay_ms <= 10_000:
        parser.error("--max-delay-ms must be between 0 and 10000")
    if args.max_frame_bytes < 1024:
        parser.error("--max-frame-bytes must be at least 1024")
    return args


def read_token(args: argparse.Namespace) -> str | None:
    """The token the arguments name (``None`` with ``--no-auth``, after a warning)."""
    if args.auth_token_stdin:
        return auth.read_token_line(sys.stdin.fileno())
    if args.auth_token_file:
        return auth.read_token_file(args.auth_token_file)
    _log.warning(
        "authentication is OFF (--no-auth): any process that can reach %s can call "
        "this worker's tools and read its telemetry; use it for development only",
        args.host,
    )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(os.environ.get("SNAKEPIT_LOG_LEVEL", "INFO"))
    try:
        token = read_token(args)
    except auth.TokenError as exc:
        _log.error("no worker token: %s", exc)
        return 2
    try:
        tls = TlsFiles.from_args(args)
    except OSError as exc:
        _log.error("cannot read the TLS files: %s", exc)
        return 2
    return asyncio.run(serve(args, token, tls))
