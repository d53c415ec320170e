"""snakepit_bridge.server.service in-process: the BridgeService RPCs over a real
``grpc.aio`` server and client (tool calls, encoding, correlation ids, telemetry
of a call, shutdown)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from bridge_harness import (
    Controls,
    measurements,
    name,
    read_events,
    request,
    result_of,
    run,
    serving,
    toggle,
    wait_until,
)
from conftest import PYTHON_ROOT, RecordingBackend, subprocess_env
from google.protobuf import any_pb2

import grpc_server
from snakepit_bridge import telemetry, tools
from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc
from snakepit_bridge.telemetry.stream import TelemetryStream

SERVER = PYTHON_ROOT / "grpc_server.py"
READY = re.compile(r'^SNAKEPIT_READY \{"port": (\d+), "pid": (\d+)\}$')


@pytest.fixture
def echo_tool() -> Iterator[None]:
    tools.register("test_echo", lambda params, ctx: {"params": params, "cid": ctx.correlation_id})
    yield
    tools.REGISTRY.pop("test_echo", None)


# --- in-process -------------------------------------------------------------------------


def test_ping() -> None:
    async def main() -> None:
        async with serving() as h:
            reply = await h.stub.Ping(pb.PingRequest(message="hi"))
            assert reply.message == "pong: hi"
            assert abs(reply.server_time.seconds - time.time()) < 60

    run(main())


def test_execute_tool_parameter_and_result_encoding(echo_tool: None) -> None:
    params = {"s": "żółw", "n": 3, "f": 1.5, "l": [1, "a", None], "o": {"k": [True]}, "z": None}

    async def main() -> None:
        async with serving(install_backend=False) as h:
            response = await h.stub.ExecuteTool(request("test_echo", params))
            assert response.success, response.error_message
            assert result_of(response) == {"params": params, "cid": None}
            assert response.error_message == ""
            assert response.execution_time_ms >= 0
            # Raw JSON bytes inside the Any, exactly as the reference encodes them.
            assert json.loads(response.result.value.decode("utf-8"))["params"]["s"] == "żółw"

    run(main())


def test_parameters_packed_as_real_string_values_are_accepted(echo_tool: None) -> None:
    from google.protobuf import any_pb2, wrappers_pb2

    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value=json.dumps({"a": 1})))

    async def main() -> None:
        async with serving(install_backend=False) as h:
            req = pb.ExecuteToolRequest(tool_name="test_echo", parameters={"p": packed})
            response = await h.stub.ExecuteTool(req)
            assert response.success and result_of(response)["params"] == {"p": {"a": 1}}

    run(main())


def test_correlation_id_from_grpc_metadata_reaches_every_span_event() -> None:
    async def main() -> None:
        async with serving() as h:
            call = h.stub.StreamTelemetryBatched(Controls(toggle(True)))
            response = await h.stub.ExecuteTool(
                request("emit_events", {"count": 2, "metadata": {"model": "m1"}}),
                metadata=(("x-snakepit-correlation-id", "corr-42"),),
            )
            assert response.success, response.error_message
            assert result_of(response) == {"emitted": 2}
            assert response.metadata["correlation_id"] == "corr-42"
            events = await read_events(call, 7)
            assert [name(e) for e in events] == [
                "python.call.start",
                "tool.execution.start",
                "tool.result_size",
                "tool.result_size",
                "tool.execution.stop",
                "tool.result_size",
                "python.call.stop",
            ]
            assert {e.correlation_id for e in events} == {"corr-42"}
            start, stop = events[0], events[-1]
            assert dict(start.metadata) == {"command": "emit_events", "tool": "emit_events"}
            assert measurements(start)["request_size"] > 0
            assert "system_time" in measurements(start)
            assert measurements(stop)["response_size"] == response.ByteSize()
            assert measurements(stop)["duration"] > 0
            assert stop.metadata["result"] == "ok"
            assert events[2].metadata["model"] == "m1"  # from the tool, in a thread
            assert measurements(events[5]) == {"bytes": len(b'{"emitted":2}')}
            call.cancel()

    run(main())


def test_correlation_id_from_request_metadata_and_header_precedence(
    recorder: RecordingBackend,
) -> None:
    async def main() -> None:
        async with serving(install_backend=False) as h:
            await h.stub.ExecuteTool(request("ping", metadata={"correlation_id": "from-req"}))
            await h.stub.ExecuteTool(
                request("ping", metadata={"correlation_id": "from-req"}),
                metadata=(("x-snakepit-correlation-id", "from-header"),),
            )
            await h.stub.ExecuteTool(request("ping", session_id="s-1"))

    run(main())
    starts = [e for e in recorder.events if e.event == "python.call.start"]
    assert [e.correlation_id for e in starts] == ["from-req", "from-header", None]
    assert starts[2].metadata["session_id"] == "s-1"
    assert {e.correlation_id for e in recorder.events if e.event == "tool.execution.stop"} == {
        "from-req",
        "from-header",
        None,
    }


def test_failing_tool(recorder: RecordingBackend) -> None:
    async def main() -> pb.ExecuteToolResponse:
        async with serving(install_backend=False) as h:
            return await h.stub.ExecuteTool(
                request("fail", {"message": "boom"}),
                metadata=(("x-snakepit-correlation-id", "c-f"),),
            )

    response = run(main())
    assert not response.success
    assert response.error_message == "ValueError: boom"
    assert not response.HasField("result")
    assert recorder.names() == [
        "python.call.start",
        "tool.execution.start",
        "tool.execution.exception",
        "python.error.occurred",
        "python.call.exception",
    ]
    error = recorder.one("python.error.occurred")
    assert error.correlation_id == "c-f"
    assert error.metadata["error_type"] == "ValueError"
    assert error.metadata["error_message"] == "ValueError: boom"
    assert error.metadata["tool"] == "fail"
    assert "Traceback" in error.metadata["traceback"] and "boom" in error.metadata["traceback"]
    assert error.measurements["count"] == 1
    assert recorder.one("tool.execution.exception").metadata["error_type"] == "ValueError"
    exception = recorder.one("python.call.exception")
    assert exception.metadata["result"] == "error"
    assert exception.metadata["error_type"] == "ValueError"
    assert exception.correlation_id == "c-f"


def test_traceback_is_bounded(recorder: RecordingBackend) -> None:
    tools.register("test_deep", lambda params, ctx: _recurse(60))
    try:

        async def main() -> pb.ExecuteToolResponse:
            async with serving(install_backend=False) as h:
                return await h.stub.ExecuteTool(request("test_deep"))

        response = run(main())
    finally:
        tools.REGISTRY.pop("test_deep")
    assert not response.success and response.error_message.startswith("RuntimeError")
    traceback_text = recorder.one("python.error.occurred").metadata["traceback"]
    assert len(traceback_text.encode()) <= grpc_server.MAX_TRACEBACK_BYTES
    assert traceback_text.rstrip().endswith("RuntimeError: deep")  # the tail is kept


def _recurse(n: int) -> None:
    if n == 0:
        raise RuntimeError("deep")
    _recurse(n - 1)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request("no_such_tool"), "unknown tool 'no_such_tool'"),
        (
            pb.ExecuteToolRequest(
                tool_name="ping",
                # An Any, not a dict: protobuf 5.27 and older take no dict for
                # a message-typed map value.
                parameters={"x": any_pb2.Any(type_url=grpc_server.JSON_TYPE_URL, value=b"{oops")},
            ),
            "parameter 'x' is not JSON",
        ),
        (request("emit_events", {"count": -1}), "count must be between"),
        (request("emit_events", {"measurements": [1]}), "measurements must be an object"),
        (request("emit_events", {"interval_ms": "1"}), "interval_ms must be a number"),
        (request("emit_events", {"count": 1.5}), "count must be an integer"),
        (request("emit_events", {"event": 3}), "event must be a string"),
    ],
)
def test_bad_calls_fail_cleanly(req: pb.ExecuteToolRequest, message: str) -> None:
    async def main() -> pb.ExecuteToolResponse:
        async with serving(install_backend=False) as h:
            return await h.stub.ExecuteTool(req)

    response = run(main())
    assert not response.success and message in response.error_message


def test_emit_events_paces_by_schedule(recorder: RecordingBackend) -> None:
    async def main() -> pb.ExecuteToolResponse:
        async with serving(install_backend=False) as h:
            return await h.stub.ExecuteTool(
                request("emit_events", {"count": 20, "interval_ms": 2.5, "event": "a.b"})
            )

    started = time.monotonic()
    response = run(main())
    assert result_of(response) == {"emitted": 20}
    events = [e for e in recorder.events if e.event == "a.b"]
    assert len(events) == 20 and events[0].measurements == {"bytes": 1}
    assert time.monotonic() - started >= 19 * 0.0025


def test_results_json_cannot_carry_are_errors() -> None:
    tools.register("test_nan", lambda params, ctx: float("nan"))
    try:

        async def main() -> pb.ExecuteToolResponse:
            async with serving(install_backend=False) as h:
                return await h.stub.ExecuteTool(request("test_nan"))

        response = run(main())
    finally:
        tools.REGISTRY.pop("test_nan")
    assert not response.success and response.error_message.startswith("ValueError")


def test_async_tools_run_on_the_loop_and_sync_tools_in_threads() -> None:
    import threading

    seen: dict[str, Any] = {}

    async def async_tool(params: dict[str, Any], ctx: tools.ToolContext) -> str:
        seen["async"] = threading.current_thread() is threading.main_thread()
        await asyncio.sleep(0)
        return "a"

    def sync_tool(params: dict[str, Any], ctx: tools.ToolContext) -> str:
        seen["sync"] = threading.current_thread() is threading.main_thread()
        return "s"

    tools.register("test_async", async_tool)
    tools.register("test_sync", sync_tool)
    try:

        async def main() -> list[Any]:
            async with serving(install_backend=False) as h:
                replies = [
                    await h.stub.ExecuteTool(request(n)) for n in ("test_async", "test_sync")
                ]
                return [result_of(r) for r in replies]

        assert run(main()) == ["a", "s"]
    finally:
        tools.REGISTRY.pop("test_async")
        tools.REGISTRY.pop("test_sync")
    assert seen == {"async": True, "sync": False}


def test_tool_decorator_registers_by_name() -> None:
    @tools.tool()
    def test_decorated(params: dict[str, Any], ctx: tools.ToolContext) -> int:
        return 1

    try:
        assert tools.get("test_decorated") is test_decorated
    finally:
        tools.REGISTRY.pop("test_decorated")
    with pytest.raises(ValueError):
        tools.register("", test_decorated)


def test_generated_registration_works_with_message_frames() -> None:
    async def main() -> None:
        stream = TelemetryStream()
        server = grpc.aio.server()
        servicer = grpc_server.BridgeService(stream, raw_frames=False)
        pb_grpc.add_BridgeServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            stream.emit("a.b", {"n": 1}, {}, None)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                # The batched call gets the event emitted before it and one
                # more, the stock call one.
                sent = 0
                for method, due in ((stub.StreamTelemetryBatched, 2), (stub.StreamTelemetry, 1)):
                    call = method(Controls())
                    await call.initial_metadata()
                    stream.emit("a.b", {"n": 1}, {}, None)
                    received = 0
                    while received < due:
                        frame = await asyncio.wait_for(call.read(), 2)
                        events = frame.events if hasattr(frame, "events") else [frame]
                        assert {name(e) for e in events} == {"a.b"}
                        received += len(events)
                    # Cancelled before the server saw its write finish, a frame
                    # counts as dropped (it cannot know better): wait for the count.
                    sent += due
                    await wait_until(lambda sent=sent: stream.stats()["sent"] == sent)
                    call.cancel()
                    await wait_until(lambda: stream.stats()["attached"] == 0)
                assert stream.stats()["dropped"] == 0, repr(stream.stats())
        finally:
            await server.stop(0)

    run(main())


def test_shutdown_refuses_new_calls() -> None:
    async def main() -> None:
        async with serving(install_backend=False) as h:
            h.servicer.begin_shutdown()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await h.stub.ExecuteTool(request("ping"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await h.servicer.wait_idle(0.1)

    run(main())


def test_wait_until_helper_times_out() -> None:
    with pytest.raises(AssertionError):
        run(wait_until(lambda: False, timeout=0.05))


def test_telemetry_env_choice(caplog: pytest.LogCaptureFixture) -> None:
    from snakepit_bridge.telemetry import manager

    assert manager.choice_from_env(None) == "grpc"
    assert manager.choice_from_env(" GRPC ") == "grpc"
    assert manager.choice_from_env("stderr") == "stderr"
    assert manager.choice_from_env("off") == "off"
    assert manager.choice_from_env("kafka") == "off"
    with caplog.at_level(logging.WARNING):
        assert manager.backend_from_env("grpc") is None  # the worker installs it
    assert caplog.records == []


def test_lazy_exports() -> None:
    from snakepit_bridge.telemetry import backends
    from snakepit_bridge.telemetry.backends.grpc import GrpcBackend

    assert telemetry.TelemetryStream is TelemetryStream
    assert backends.GrpcBackend is GrpcBackend
    with pytest.raises(AttributeError):
        _ = telemetry.NoSuchThing  # type: ignore[attr-defined]


def test_importing_telemetry_does_not_import_asyncio_or_grpc() -> None:
    code = (
        "import sys; from snakepit_bridge import telemetry;"
        "telemetry.emit('a.b', {'n': 1});"
        "print(sorted(m for m in ('asyncio', 'grpc', 'google.protobuf') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PYTHON_ROOT,
        env=subprocess_env(PYTHONPATH=str(PYTHON_ROOT), PYTHON_SNAKEPIT_TELEMETRY="stderr"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
