"""examples/stderr_emitter.py, run as a real program with the stderr backend."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge import catalog
from snakepit_bridge.telemetry.backends.stderr import PREFIX

SCRIPT = PYTHON_ROOT / "examples" / "stderr_emitter.py"
MALFORMED = "TELEMETRY:{not json"


def run_emitter(
    python: str, cwd: Path, *args: str, telemetry: str | None = "stderr"
) -> subprocess.CompletedProcess[str]:
    # From another folder and without PYTHONPATH: the script must find the package itself.
    return subprocess.run(
        [python, str(SCRIPT), *args],
        cwd=cwd,
        env=subprocess_env(PYTHON_SNAKEPIT_TELEMETRY=telemetry),
        capture_output=True,
        text=True,
        timeout=60,
    )


def telemetry_payloads(stderr: str) -> tuple[list[dict], list[str]]:
    """(parsed telemetry lines, lines that start with the prefix but are not JSON)."""
    payloads, malformed = [], []
    for line in stderr.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            payloads.append(json.loads(line[len(PREFIX) :]))
        except json.JSONDecodeError:
            malformed.append(line)
    return payloads, malformed


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    return run_emitter(
        sys.executable, tmp_path_factory.mktemp("cwd"), "--count", "2", "--delay-ms", "2"
    )


def test_exits_zero_and_writes_ordinary_lines(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stderr
    stdout_lines = run.stdout.splitlines()
    assert stdout_lines and not any(line.startswith(PREFIX) for line in stdout_lines)
    log_lines = [line for line in run.stderr.splitlines() if not line.startswith(PREFIX)]
    assert log_lines, "expected ordinary log lines on stderr too"


def test_every_telemetry_line_parses_except_the_deliberate_one(
    run: subprocess.CompletedProcess[str],
) -> None:
    payloads, malformed = telemetry_payloads(run.stderr)
    assert malformed == [MALFORMED]
    limit = catalog.limits()["max_stderr_line_bytes"]
    for line in run.stderr.splitlines():
        assert len(line.encode()) <= limit
    for payload in payloads:
        assert list(payload) == [
            "event",
            "measurements",
            "metadata",
            "timestamp_ns",
            "correlation_id",
        ]
        assert all(isinstance(v, int | float) for v in payload["measurements"].values())
        assert all(isinstance(v, str) for v in payload["metadata"].values())
        assert isinstance(payload["timestamp_ns"], int)


def test_expected_events_in_expected_numbers(run: subprocess.CompletedProcess[str]) -> None:
    payloads, _ = telemetry_payloads(run.stderr)
    counts = Counter(p["event"] for p in payloads)
    assert counts == {
        "python.call.start": 2,
        "python.call.stop": 2,
        "tool.execution.start": 3,  # two calls + the failing tool
        "tool.execution.stop": 2,
        "tool.execution.exception": 1,
        "tool.result_size": 2,
        "python.bogus.event": 1,
    }
    known = {name for name in counts if name in catalog.python_events()}
    assert set(counts) - known == {"python.bogus.event"}


def test_correlation_ids_flow_into_nested_spans(run: subprocess.CompletedProcess[str]) -> None:
    payloads, _ = telemetry_payloads(run.stderr)
    by_id: dict[str | None, list[str]] = {}
    for p in payloads:
        by_id.setdefault(p["correlation_id"], []).append(p["event"])
    for request in ("req-1", "req-2"):
        assert by_id[request] == [
            "python.call.start",
            "tool.execution.start",
            "tool.execution.stop",
            "tool.result_size",
            "python.call.stop",
        ]
    assert by_id["req-fail"] == ["tool.execution.start", "tool.execution.exception"]


def test_measurements_and_error_metadata(run: subprocess.CompletedProcess[str]) -> None:
    payloads, _ = telemetry_payloads(run.stderr)
    stops = [p for p in payloads if p["event"] == "tool.execution.stop"]
    assert all(p["measurements"]["duration"] >= 2_000_000 for p in stops)  # --delay-ms 2, in ns
    starts = [p for p in payloads if p["event"].endswith(".start")]
    assert all(p["measurements"]["system_time"] > 1_600_000_000 * 10**9 for p in starts)
    (exception,) = [p for p in payloads if p["event"] == "tool.execution.exception"]
    assert exception["metadata"]["tool"] == "flaky"
    assert exception["metadata"]["error_type"] == "ToolError"
    assert "simulated failure" in exception["metadata"]["error_message"]
    sizes = [p for p in payloads if p["event"] == "tool.result_size"]
    assert all(p["measurements"]["bytes"] > 0 and p["metadata"]["tool"] for p in sizes)


def test_default_count_is_three(python: str, tmp_path: Path) -> None:
    result = run_emitter(python, tmp_path, "--delay-ms", "0")
    assert result.returncode == 0, result.stderr
    payloads, _ = telemetry_payloads(result.stderr)
    assert sum(p["event"] == "python.call.start" for p in payloads) == 3


def test_unset_env_still_uses_stderr(python: str, tmp_path: Path) -> None:
    result = run_emitter(python, tmp_path, "--count", "1", "--delay-ms", "0", telemetry=None)
    assert result.returncode == 0, result.stderr
    assert telemetry_payloads(result.stderr)[0]


def test_off_emits_no_telemetry_lines(python: str, tmp_path: Path) -> None:
    result = run_emitter(python, tmp_path, "--count", "1", "--delay-ms", "0", telemetry="off")
    assert result.returncode == 0, result.stderr
    assert PREFIX not in result.stderr and PREFIX not in result.stdout
    assert "telemetry off" in result.stdout
