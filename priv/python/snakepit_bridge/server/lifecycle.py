"""When a worker stops: SIGTERM or SIGINT, end-of-file on stdin (the Elixir
port closes the pipe when its owner or the BEAM dies), or its parent process
going away (``os.getppid()`` changes; checked every 0.5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

PARENT_POLL_SECONDS = 0.5

Stop = Callable[[str], None]


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: Stop) -> None:
    """Blocks reading stdin (discarding it); end-of-file means the parent is gone."""
    try:
        fd = sys.stdin.fileno()
        while os.read(fd, 65536):
            pass
    except (OSError, ValueError, AttributeError):
        return  # no usable stdin: nothing to watch
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop, "stdin closed")


async def _watch_parent(initial_ppid: int, stop: Stop) -> None:
    while True:
        await asyncio.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != initial_ppid:
            stop(f"parent process {initial_ppid} exited")
            return


def watch(stop: Stop, *, initial_ppid: int, watch_stdin: bool = True) -> asyncio.Task[None]:
    """Calls ``stop(reason)`` on any of the events above; returns the parent
    watchdog task (cancel it when stopping)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    if watch_stdin:
        threading.Thread(
            target=_watch_stdin, args=(loop, stop), name="stdin-watch", daemon=True
        ).start()
    return loop.create_task(_watch_parent(initial_ppid, stop))
