"""The worker's log lines: one stderr line per record, its level named.

Elixir reads a worker's output line by line (``Snakepit.Telemetry.PythonCapture``)
and logs each line at the level it names (``snakepit-worker[pid] LEVEL ...``).
A record that spans lines (a traceback, a message with newlines) is written
as one line with :data:`LINE_BREAK` for its line ends, and Elixir turns them
back into newlines: one record, one Logger entry, at its level. Uncaught
exceptions (main thread and other threads) are logged the same way, as
``CRITICAL``.

Standard library only: the worker uses this to report that a dependency such
as grpcio is missing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import TracebackType

__all__ = ["LINE_BREAK", "OneLineFormatter", "configure", "missing_module_line", "unfold"]

#: Stands for a line end inside one record (U+2028 LINE SEPARATOR; Elixir's
#: ``PythonCapture`` turns it back into a newline).
LINE_BREAK = "\u2028"

#: The pip package that provides a module the worker needs.
_PACKAGES = {"grpc": "grpcio", "google": "protobuf", "psutil": "psutil"}

_log = logging.getLogger("snakepit.worker")


class OneLineFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose output never contains a line end."""

    def format(self, record: logging.LogRecord) -> str:
        return fold(super().format(record))


def fold(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", LINE_BREAK)


def unfold(text: str) -> str:
    return text.replace(LINE_BREAK, "\n")


def prefix() -> str:
    return f"snakepit-worker[{os.getpid()}]"


def configure(level: str | int = "INFO") -> None:
    """Logs to stderr in the worker format and logs uncaught exceptions."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(f"{prefix()} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread


def _uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    _log.critical("uncaught exception", exc_info=(kind, value, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _log.critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def missing_module_line(exc: ModuleNotFoundError, requirements: str) -> str:
    """The one error line for a dependency that cannot be imported."""
    top = (exc.name or "").split(".")[0]
    package = _PACKAGES.get(top, top or "?")
    return (
        f"{prefix()} ERROR cannot start the worker: {exc} (pip package {package!r}) "
        f"in the interpreter {sys.executable}; run `mix snakepit.setup` to create an "
        f"environment with the worker's requirements, or install them into this one: "
        f"{sys.executable} -m pip install -r {requirements}"
    )
