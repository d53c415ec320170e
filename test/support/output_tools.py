"""Tools for tests of a worker's output handling (loaded with --tool-module)."""

from __future__ import annotations

import sys
from typing import Any

from snakepit_bridge import tools


@tools.tool()
def write_output(params: dict[str, Any], ctx: Any) -> dict[str, int]:
    """Writes ``params["text"]`` and a newline to stderr, as one write."""
    text = str(params.get("text", ""))
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    return {"bytes": len(text.encode())}
