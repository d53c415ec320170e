#!/usr/bin/env python3
"""A real Python program that emits telemetry through the stderr backend.

Run it from anywhere (standard library only)::

    PYTHON_SNAKEPIT_TELEMETRY=stderr python3 priv/python/examples/stderr_emitter.py --count 3

Without ``PYTHON_SNAKEPIT_TELEMETRY`` it installs the stderr backend itself; with
``PYTHON_SNAKEPIT_TELEMETRY=off`` it emits nothing (and says so on stdout).

What it writes, so the Elixir side (``Snakepit.Telemetry.PythonCapture``,
``mix run examples/stderr_demo.exs``) can show every kind of line:

* per call ``i`` (correlation id ``req-i``): ``python.call.start``, then a
  ``tool.execution`` span (start/stop) that inherits the id from the enclosing
  span, ``tool.result_size``, and ``python.call.stop`` with ``response_size``;
* one failing tool (correlation id ``req-fail``): ``tool.execution.start`` and
  ``tool.execution.exception`` with ``error_type``/``error_message``; the demo
  catches the error;
* ordinary log lines on stderr and on stdout (they go to Logger);
* one malformed line ``TELEMETRY:{not json`` and one event with a name that is not
  in the catalog (``python.bogus.event``), both rejected and counted by the receiver
  (only while telemetry is on).

Exit status 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Make `snakepit_bridge` importable however the script is started.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snakepit_bridge import telemetry  # noqa: E402
from snakepit_bridge.telemetry.backends.stderr import StderrBackend  # noqa: E402
from snakepit_bridge.telemetry.manager import ENV_VAR  # noqa: E402

TOOLS = ("predict", "embed", "summarize")


class ToolError(RuntimeError):
    """What the failing fake tool raises."""


def fake_tool(name: str, delay_s: float) -> str:
    """Pretends to work for ``delay_s`` seconds and returns a result."""
    time.sleep(delay_s)
    return f"{name}:" + "x" * (16 * (len(name) + 1))


def failing_tool(delay_s: float) -> str:
    time.sleep(delay_s)
    raise ToolError("simulated failure in tool 'flaky'")


def call(i: int, delay_s: float) -> None:
    """One fake request: a python.call span around a tool.execution span."""
    tool = TOOLS[i % len(TOOLS)]
    with telemetry.span(
        "python.call", {"command": "execute_tool", "tool": tool}, correlation_id=f"req-{i + 1}"
    ) as call_span:
        # No correlation id given: the tool span inherits "req-<i>" from the call span.
        with telemetry.span("tool.execution", {"tool": tool}) as tool_span:
            result = fake_tool(tool, delay_s)
            tool_span.set_measurement("count", 1)
        telemetry.emit("tool.result_size", {"bytes": len(result)}, {"tool": tool})
        call_span.set_measurement("response_size", len(result))
        call_span.set_metadata("result", "ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3, help="fake tool calls (default 3)")
    parser.add_argument(
        "--delay-ms", type=float, default=20.0, help="time each fake tool takes (default 20)"
    )
    args = parser.parse_args(argv)
    delay_s = max(args.delay_ms, 0.0) / 1000.0

    if os.environ.get(ENV_VAR) is None:
        telemetry.set_backend(StderrBackend())
    print(
        f"stderr_emitter: pid {os.getpid()}, {args.count} calls, telemetry "
        f"{'on' if telemetry.is_enabled() else 'off'}",
        flush=True,
    )
    print("stderr_emitter: an ordinary log line on stderr", file=sys.stderr, flush=True)

    for i in range(args.count):
        call(i, delay_s)

    try:
        with telemetry.span("tool.execution", {"tool": "flaky"}, correlation_id="req-fail"):
            failing_tool(delay_s)
    except ToolError as exc:
        print(f"stderr_emitter: tool 'flaky' failed as planned: {exc}", file=sys.stderr, flush=True)

    if telemetry.is_enabled():
        # For the receiver's rejection counters: a line that is not JSON ...
        sys.stderr.write("TELEMETRY:{not json\n")
        sys.stderr.flush()
        # ... and a well-formed event whose name is not in the catalog.
        telemetry.emit("python.bogus.event", {"count": 1}, {"reason": "demo"})

    print(f"stderr_emitter: done, telemetry stats {telemetry.stats()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
