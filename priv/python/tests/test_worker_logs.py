"""The worker's log lines (snakepit_bridge.server.logs): one stderr line per
record, level named, so Elixir logs each record once at its level; start
failures say what is missing and how to fix it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge.server import logs

SERVER = PYTHON_ROOT / "grpc_server.py"


def run_server(
    *args: str, python: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(python or [sys.executable]), str(SERVER), "--no-auth", *args],
        stdin=subprocess.PIPE,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    # Not splitlines(): it also splits at LINE_BREAK (U+2028).
    return [line for line in result.stderr.split("\n") if line]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one ERROR line; every line is a worker log line (no bare traceback)."""
    lines = stderr_lines(result)
    assert all(line.startswith("snakepit-worker[") for line in lines), lines
    (line,) = [line for line in lines if " ERROR " in line]
    return line


def test_a_record_with_a_traceback_is_one_line() -> None:
    formatter = logs.OneLineFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = formatter.format(record)
    assert "\n" not in text and "\r" not in text
    assert text.startswith("ERROR failed" + logs.LINE_BREAK + "Traceback (most recent call last):")
    assert text.endswith("ValueError: bad" + logs.LINE_BREAK + "value")
    assert logs.unfold(text).split("\n")[1] == "Traceback (most recent call last):"


def test_a_missing_tool_module_is_one_error_line_naming_the_path(tmp_path: Path) -> None:
    result = run_server("--tool-module", "no_such_module_xyz", PYTHONPATH=str(tmp_path))
    assert result.returncode == 1 and "SNAKEPIT_READY" not in result.stdout
    line = error_line(result)
    assert " ERROR cannot import tool module 'no_such_module_xyz'" in line
    assert "No module named 'no_such_module_xyz'" in line
    assert str(tmp_path) in line  # the path searched


def test_a_tool_module_that_raises_is_one_error_line_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken_tools.py").write_text("import json\nraise RuntimeError('config missing')\n")
    result = run_server("--tool-module", "broken_tools", PYTHONPATH=str(tmp_path))
    assert result.returncode == 1
    line = error_line(result)
    assert "cannot import tool module 'broken_tools'" in line
    assert "RuntimeError: config missing" in line and "Traceback" in line


def test_a_missing_dependency_names_the_package_and_the_fix() -> None:
    # -S: no site-packages, so grpcio (and everything else installed) is missing.
    result = run_server(python=[sys.executable, "-S"])
    assert result.returncode == 1 and "SNAKEPIT_READY" not in result.stdout
    (line,) = stderr_lines(result)
    assert line.startswith("snakepit-worker[") and " ERROR " in line
    assert "No module named 'grpc'" in line and "grpcio" in line
    assert "mix snakepit.setup" in line and "requirements.txt" in line
    # The worker names its interpreter as it sees it: a path normalised
    # (scripts/test.sh runs pytest as ../../.venv/bin/python).
    assert os.path.normpath(sys.executable) in line


def test_an_uncaught_error_in_a_thread_is_one_critical_line() -> None:
    code = (
        "import logging, sys, threading\n"
        "from snakepit_bridge.server import logs\n"
        "logs.configure('INFO')\n"
        "t = threading.Thread(target=lambda: 1 / 0); t.start(); t.join()\n"
        "raise KeyError('k')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(PYTHONPATH=str(PYTHON_ROOT)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    thread_line, main_line = stderr_lines(result)
    assert " CRITICAL uncaught exception in thread" in thread_line
    assert "ZeroDivisionError" in thread_line
    assert " CRITICAL uncaught exception" in main_line and "KeyError: 'k'" in main_line
