"""bench/emit_bench.py keeps working (a tiny run; the numbers are not checked)."""

from __future__ import annotations

import json
import subprocess

from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge.telemetry import wire

CASES = {
    "empty_loop",
    "no_backend",
    "noop_backend",
    "noop_backend_coerce",
    "span_noop_backend",
    "stderr_stringio",
    "stderr_devnull",
    "stderr_devnull_stdlib",
    "grpc_backend",
    "grpc_backend_full",
    "grpc_backend_off",
    "encode_wire",
    "encode_protobuf",
}
STREAM_CASES = {
    "rpc_drain_eps",
    "rpc_paced_eps",
    "rpc_paced_drop_pct",
    "rpc_unpaced_eps",
    "rpc_unpaced_drop_pct",
    "latency_p50_us",
    "latency_p99_us",
    "latency_busy_p50_us",
    "latency_busy_p99_us",
}
AUTH_CASES = {"auth_check_ns", "auth_intercept_ns", "rpc_ping_us", "rpc_ping_auth_us"}


def test_bench_runs_and_reports_every_case(python: str) -> None:
    result = subprocess.run(
        [
            python,
            str(PYTHON_ROOT / "bench" / "emit_bench.py"),
            "--batches",
            "3",
            "--per-batch",
            "20",
            "--throughput-seconds",
            "0.05",
            "--auth-calls",
            "200",
            "--json",
        ],
        cwd=PYTHON_ROOT.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the stderr backend case writes to its own stream
    numbers = json.loads(result.stdout)
    cases = CASES | ({"encode_native"} if wire.NATIVE is not None else set())
    assert set(numbers) == cases | STREAM_CASES | AUTH_CASES
    assert all(numbers[case] > 0 for case in cases | AUTH_CASES)
    assert all(numbers[case] > 0 for case in STREAM_CASES if not case.endswith("_pct"))
