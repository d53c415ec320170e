"""The demo tools: telemetry_demo and telemetry_state."""

from __future__ import annotations

import pytest

from snakepit_bridge import demo_tools, tools
from snakepit_bridge.telemetry import set_backend
from snakepit_bridge.telemetry.backends.grpc import GrpcBackend
from snakepit_bridge.telemetry.stream import TelemetryStream

CTX = tools.ToolContext(tool_name="telemetry_demo", correlation_id="c-1")


def test_tools_are_registered():
    assert tools.get("telemetry_demo") is demo_tools.telemetry_demo
    assert tools.get("telemetry_state") is demo_tools.telemetry_state


def test_telemetry_demo_returns_a_result_and_emits(recorder):
    result = demo_tools.telemetry_demo({"operation": "test", "delay_ms": 1}, CTX)
    assert result["operation"] == "test" and result["delay_ms"] == 1
    assert recorder.names() == [
        "tool.execution.start",
        "tool.execution.stop",
        "tool.result_size",
    ]


@pytest.mark.parametrize("delay", ["x", -1, 10_001])
def test_telemetry_demo_rejects_bad_delay(delay, recorder):
    with pytest.raises(tools.ToolError):
        demo_tools.telemetry_demo({"delay_ms": delay}, CTX)


def test_telemetry_state_reports_settings_and_counters():
    stream = TelemetryStream()
    set_backend(GrpcBackend(stream))
    stream.update_sampling(0.25, ["tool.*"])
    stream.update_filter(deny=["python.gc.*"])
    state = demo_tools.telemetry_state({}, CTX)
    assert state["sampling_rate"] == 0.25
    assert list(state["sampling_patterns"]) == ["tool.*"]
    assert list(state["deny"]) == ["python.gc.*"]
    assert state["enabled"] is True
    assert state["active_streams"] == 0
    assert "emitted" in state and "dropped" in state


def test_telemetry_state_without_a_stream(recorder):
    assert demo_tools.telemetry_state({}, CTX) == {"backend": "RecordingBackend"}


def test_emit_random_is_repeatable_and_mostly_unknown(recorder):
    demo_tools.emit_random({"count": 200, "seed": 7}, CTX)
    first = recorder.names()
    recorder.events.clear()
    demo_tools.emit_random({"count": 200, "seed": 7}, CTX)
    assert recorder.names() == first
    assert len(first) == 200
    known = {"python.call.start", "tool.result_size", "tool.execution.stop"}
    assert 20 < sum(name in known for name in first) < 120
