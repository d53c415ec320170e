"""bench/emit_bench.py keeps working (a tiny run; the numbers are not checked)."""

from __future__ import annotations

import json
import subprocess

from conftest import PYTHON_ROOT, subprocess_env

CASES = {
    "empty_loop",
    "no_backend",
    "noop_backend",
    "noop_backend_coerce",
    "span_noop_backend",
    "stderr_stringio",
    "stderr_devnull",
}


def test_bench_runs_and_reports_every_case(python: str) -> None:
    result = subprocess.run(
        [
            python,
            str(PYTHON_ROOT / "bench" / "emit_bench.py"),
            "--batches",
            "3",
            "--per-batch",
            "20",
            "--json",
        ],
        cwd=PYTHON_ROOT.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the stderr backend case writes to its own stream
    numbers = json.loads(result.stdout)
    assert set(numbers) == CASES
    assert all(v > 0 for v in numbers.values())
