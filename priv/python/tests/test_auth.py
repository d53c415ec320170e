"""The worker token (snakepit_bridge.server.auth): reading it, and the
interceptor that refuses every RPC without it."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from bridge_harness import TOKEN, Controls, bearer, read_batches, run, serving, toggle
from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc
from snakepit_bridge.server import auth

SERVER = PYTHON_ROOT / "grpc_server.py"


# --- the token ----------------------------------------------------------------------


def test_check_token_bounds_and_characters() -> None:
    assert auth.check_token("a" * 22) == "a" * 22
    for bad in (
        "",
        "a" * 21,
        "a" * 1025,
        "has space in it 12345678",
        "tab\there0123456789012",
        "é" * 30,
    ):
        with pytest.raises(auth.TokenError):
            auth.check_token(bad)


def test_read_token_line_reads_exactly_one_line() -> None:
    r, w = os.pipe()
    os.write(w, (TOKEN + "\nrest of stdin").encode())
    try:
        assert auth.read_token_line(r) == TOKEN
        assert os.read(r, 100) == b"rest of stdin"  # nothing after the line was consumed
    finally:
        os.close(r)
        os.close(w)


def test_read_token_line_refuses_end_of_file_and_endless_lines() -> None:
    r, w = os.pipe()
    os.write(w, b"short")
    os.close(w)
    with pytest.raises(auth.TokenError, match="ended"):
        auth.read_token_line(r)
    os.close(r)
    r, w = os.pipe()
    os.write(w, b"x" * 2000)
    with pytest.raises(auth.TokenError, match="too long"):
        auth.read_token_line(r)
    os.close(r)
    os.close(w)


def test_read_token_file_wants_a_private_file_and_deletes_it(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(auth.TokenError, match="0600"):
        auth.read_token_file(str(path))
    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(auth.TokenError):
        auth.read_token_file(str(link))
    assert auth.read_token_file(str(path)) == TOKEN
    assert not path.exists()
    with pytest.raises(auth.TokenError):
        auth.read_token_file(str(path))


# --- the interceptor -------------------------------------------------------------------


async def _unauthenticated_calls(port: int, metadata: tuple) -> list[grpc.StatusCode]:
    """Each RPC once with ``metadata``: the status codes it got."""
    codes = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        unary = [
            lambda: stub.Ping(pb.PingRequest(message="x"), metadata=metadata),
            lambda: stub.ExecuteTool(pb.ExecuteToolRequest(tool_name="ping"), metadata=metadata),
        ]
        for call in unary:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call()
            codes.append(refused.value.code())
        for method in (stub.StreamTelemetryBatched, stub.StreamTelemetry):
            call = method(Controls(toggle(True)), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _frame in call:
                    raise AssertionError("an unauthenticated stream received a frame")
            codes.append(refused.value.code())
    return codes


@pytest.mark.parametrize(
    "metadata", [(), bearer("wrong-token-0123456789abc"), (("authorization", TOKEN),)]
)
def test_every_rpc_without_the_token_is_unauthenticated(metadata: tuple) -> None:
    async def main() -> None:
        async with serving(token=TOKEN) as h:
            h.stream.emit("a.b", {"n": 1}, {}, None)
            codes = await _unauthenticated_calls(h.port, metadata)
            assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 4
            assert h.stream.stats()["auth_rejected"] == 4
            # The buffered event is still there for the real consumer.
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            (batch,) = await read_batches(call, 1)
            assert batch.auth_rejected_total == 4
            call.cancel()

    run(main())


def test_an_authenticated_stream_survives_an_intruder() -> None:
    async def main() -> None:
        async with serving(token=TOKEN) as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            await call.initial_metadata()
            h.stream.emit("a.b", {"n": 1}, {}, None)
            await read_batches(call, 1)
            codes = await _unauthenticated_calls(h.port, ())
            assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
            h.stream.emit("a.b", {"n": 2}, {}, None)
            (batch,) = await read_batches(call, 1)
            assert [e.measurements["n"].int_value for e in batch.events] == [2]
            assert h.stream.stats()["streams"] == 1  # the intruder never attached
            call.cancel()

    run(main())


def test_authenticated_calls_pass() -> None:
    async def main() -> None:
        async with serving(token=TOKEN) as h:
            assert (await h.stub.Ping(pb.PingRequest(message="x"))).message == "pong: x"
            assert (await h.stub.ExecuteTool(pb.ExecuteToolRequest(tool_name="ping"))).success
            assert h.stream.stats()["auth_rejected"] == 0

    run(main())


# --- the worker's command line ------------------------------------------------------------


def _start(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(SERVER), "--port", "0", *args],
        input=stdin,
        env=subprocess_env(),
        capture_output=True,
        timeout=30,
    )


def test_a_worker_needs_a_token_or_an_explicit_opt_out() -> None:
    result = _start()
    assert result.returncode == 2
    assert b"--auth-token-stdin" in result.stderr and b"--no-auth" in result.stderr


def test_a_worker_whose_stdin_ends_before_the_token_exits_2() -> None:
    result = _start("--auth-token-stdin", stdin=b"")
    assert result.returncode == 2
    assert b"no worker token" in result.stderr and b"SNAKEPIT_READY" not in result.stdout


def test_no_auth_logs_a_warning() -> None:
    # stdin at end of file: the worker starts, warns, and stops at once.
    result = _start("--no-auth")
    assert result.returncode == 0, result.stderr
    assert b"authentication is OFF" in result.stderr
