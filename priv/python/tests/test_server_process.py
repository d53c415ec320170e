"""The worker process (grpc_server.py -> snakepit_bridge.server.app and
.lifecycle): the ready line, the command line, and shutdown on SIGTERM, stdin
end-of-file and parent death."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from bridge_harness import (
    TOKEN,
    Controls,
    authed_channel,
    name,
    read_events,
    request,
    result_of,
    run,
    toggle,
)
from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc

SERVER = PYTHON_ROOT / "grpc_server.py"
READY = re.compile(r'^SNAKEPIT_READY \{"port": (\d+), "pid": (\d+)\}$')


# --- the worker process -------------------------------------------------------------------


def start_worker(
    *args: str, demo_tools: bool = True, **env: str | None
) -> tuple[subprocess.Popen[str], int]:
    """Starts grpc_server.py (with its demo tools unless told otherwise);
    returns the process and its port once ready."""
    flags = ["--demo-tools"] if demo_tools else []
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--auth-token-stdin", *flags, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(**env),
        cwd="/",
        text=True,
    )
    assert proc.stdin
    proc.stdin.write(TOKEN + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline() if proc.stdout else ""
    match = READY.match(line.rstrip("\n"))
    if not match:
        proc.kill()
        raise AssertionError(f"no ready line: {line!r} {proc.communicate()[1]}")
    assert int(match.group(2)) == proc.pid
    return proc, int(match.group(1))


def stop_worker(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def test_a_default_worker_has_ping_and_no_demo_tools() -> None:
    proc, port = start_worker("--sample-interval-ms", "0", demo_tools=False)
    try:

        async def main() -> list[pb.ExecuteToolResponse]:
            async with authed_channel(port) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                names = ["ping", "emit_events", "fail", "telemetry_demo", "emit_random"]
                return [await stub.ExecuteTool(request(name, {})) for name in names]

        ping, *demo = run(main())
        assert ping.success
        for reply in demo:
            assert not reply.success and "unknown tool" in reply.error_message
    finally:
        stop_worker(proc)


def test_worker_ready_line_telemetry_and_sigterm() -> None:
    # No resource samples: this test counts the stream's events exactly.
    proc, port = start_worker("--worker-id", "w-1", "--max-batch", "8", "--sample-interval-ms", "0")
    try:

        async def main() -> list[pb.TelemetryEvent]:
            async with authed_channel(port) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                assert (await stub.Ping(pb.PingRequest(message="x"))).message == "pong: x"
                call = stub.StreamTelemetryBatched(Controls(toggle(True)))
                await asyncio.wait_for(call.initial_metadata(), 5)
                reply = await stub.ExecuteTool(
                    request("emit_events", {"count": 20}),
                    metadata=(("x-snakepit-correlation-id", "p-1"),),
                )
                assert reply.success, reply.error_message
                events = await read_events(call, 25)
                call.cancel()
                return events

        events = run(main())
        assert sum(name(e) == "tool.result_size" for e in events) == 21
        assert {e.correlation_id for e in events} == {"p-1"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout and proc.stdout.read() == ""  # the ready line was the only output
    finally:
        stop_worker(proc)


def test_worker_does_not_wait_forever_for_a_stuck_tool() -> None:
    proc, port = start_worker("--shutdown-grace", "0.3")
    try:

        async def main() -> None:
            async with authed_channel(port) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                call = stub.ExecuteTool(request("emit_events", {"count": 2, "interval_ms": 60_000}))
                await asyncio.sleep(0.3)  # the tool is sleeping in its thread
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(proc.wait, 10) == 0
                assert time.monotonic() - started < 5
                with pytest.raises(grpc.aio.AioRpcError):
                    await call

        run(main())
        assert proc.stderr and "exiting anyway" in proc.stderr.read()
    finally:
        stop_worker(proc)


def test_worker_exits_when_stdin_closes() -> None:
    proc, _ = start_worker()
    try:
        assert proc.stdin
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr and "stdin closed" in proc.stderr.read()
    finally:
        stop_worker(proc)


def test_worker_exits_when_its_parent_dies() -> None:
    # A parent that starts the worker (stdin not watched, so only the ppid
    # watchdog can notice), reports its pid, then dies without a word.
    parent_code = f"""
import subprocess, sys, os
child = subprocess.Popen([sys.executable, {str(SERVER)!r}, "--port", "0",
                          "--ignore-stdin", "--no-auth"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
os._exit(0)
"""
    parent = subprocess.run(
        [sys.executable, "-c", parent_code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    pid_text, ready = parent.stdout.split(" ", 1)
    assert READY.match(ready.strip()), parent.stdout + parent.stderr
    worker = int(pid_text)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(worker).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its parent")


def test_worker_with_stderr_backend_writes_telemetry_lines() -> None:
    proc, port = start_worker(PYTHON_SNAKEPIT_TELEMETRY="stderr")
    try:

        async def main() -> None:
            async with authed_channel(port) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                reply = await stub.ExecuteTool(request("emit_events", {"count": 2}))
                assert reply.success

        run(main())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr
        stderr = proc.stderr.read()
        lines = [json.loads(x[10:]) for x in stderr.splitlines() if x.startswith("TELEMETRY:")]
        assert [x["event"] for x in lines].count("tool.result_size") == 3
    finally:
        stop_worker(proc)


def test_worker_imports_tool_modules(tmp_path: Path) -> None:
    (tmp_path / "my_tools.py").write_text(
        "from snakepit_bridge.tools import tool\n"
        "@tool('shout')\n"
        "def shout(params, ctx):\n"
        "    return params['text'].upper()\n"
    )
    proc, port = start_worker(
        "--tool-module", "my_tools", PYTHONPATH=str(tmp_path), SNAKEPIT_TOOL_MODULES="json"
    )
    try:

        async def main() -> Any:
            async with authed_channel(port) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                return result_of(await stub.ExecuteTool(request("shout", {"text": "hi"})))

        assert run(main()) == "HI"
    finally:
        stop_worker(proc)
    result = subprocess.run(
        [sys.executable, str(SERVER), "--no-auth", "--tool-module", "no_such_module_xyz"],
        stdin=subprocess.PIPE,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "no_such_module_xyz" in result.stderr
    assert "SNAKEPIT_READY" not in result.stdout


def test_worker_that_cannot_bind_exits_1_without_ready_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(SERVER), "--no-auth", "--port", str(port)],
            stdin=subprocess.PIPE,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "SNAKEPIT_READY" not in result.stdout
    assert "cannot start" in result.stderr


@pytest.mark.parametrize("pure", ["1", None])
def test_the_worker_says_which_telemetry_encoder_it_uses(
    pure: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from snakepit_bridge.telemetry import wire

    monkeypatch.delenv("SNAKEPIT_BRIDGE_PURE_PYTHON", raising=False)
    native = pure is None and wire._native_encoder() is not None
    proc, _ = start_worker(SNAKEPIT_BRIDGE_PURE_PYTHON=pure)
    try:
        assert proc.stdin
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert f"encoder: {'native' if native else 'python'}," in stderr
    finally:
        stop_worker(proc)
