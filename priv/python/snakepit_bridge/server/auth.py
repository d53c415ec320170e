"""The per-worker token: only the BEAM that started a worker may call it.

``Snakepit.GRPCWorker`` makes a random token for each worker process and
writes it as the first line of the worker's stdin (``--auth-token-stdin``),
so it never appears on a command line or in an environment. Every RPC
(ExecuteTool, Ping, both telemetry RPCs) must carry the metadata
``authorization: Bearer <token>``; :class:`TokenAuthInterceptor` refuses any
other call with ``UNAUTHENTICATED`` before a handler runs or a request is
decoded, and counts it. Workers started by hand may read the token from a
file only their user can read (``--auth-token-file``, deleted once read), or
run without authentication with ``--no-auth``, which logs a warning.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import grpc

#: The metadata key and scheme of the token (gRPC's usual bearer form).
METADATA_KEY = "authorization"
SCHEME = "Bearer "
#: 128 bits in base64 take 22 characters.
MIN_TOKEN_CHARS = 22
MAX_TOKEN_CHARS = 1024
#: At most one log line per this many seconds about refused calls.
LOG_EVERY_S = 10.0

_log = logging.getLogger("snakepit.worker")


class TokenError(ValueError):
    """No usable token."""


def check_token(token: str) -> str:
    """A token is 22..1024 visible ASCII characters (a header value)."""
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise TokenError(
            f"the token must have {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} characters, not {len(token)}"
        )
    if not all("!" <= c <= "~" for c in token):
        raise TokenError("the token must be visible ASCII characters without spaces")
    return token


def read_token_line(fd: int) -> str:
    """The first line of ``fd`` (the worker's stdin), read byte-exact with
    ``os.read`` so nothing after it is buffered away from the stdin watcher."""
    data = bytearray()
    while not data.endswith(b"\n"):
        if len(data) > MAX_TOKEN_CHARS + 2:
            raise TokenError("the token line is too long")
        chunk = os.read(fd, 1)
        if not chunk:
            raise TokenError("stdin ended before the token line")
        data += chunk
    return check_token(data.decode("ascii", "replace").strip())


def read_token_file(path: str) -> str:
    """Reads the token from ``path`` and deletes the file. The file must be a
    regular file of this user that nobody else can read or write (0600)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise TokenError(f"cannot open the token file: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenError("the token file is not a regular file")
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise TokenError("the token file must belong to this user with mode 0600")
        raw = os.read(fd, MAX_TOKEN_CHARS + 2)
    finally:
        os.close(fd)
    os.unlink(path)
    return check_token(raw.decode("ascii", "replace").strip())


async def _refuse(request: Any, context: Any) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong worker token")


# One refusing handler of each shape: its request is never decoded.
_REFUSALS = {
    (False, False): grpc.unary_unary_rpc_method_handler(_refuse),
    (False, True): grpc.unary_stream_rpc_method_handler(_refuse),
    (True, False): grpc.stream_unary_rpc_method_handler(_refuse),
    (True, True): grpc.stream_stream_rpc_method_handler(_refuse),
}


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Passes a call on only if its metadata carries the token (constant-time
    compare); refuses it with ``UNAUTHENTICATED`` otherwise. ``on_reject`` is
    called with the method of each refused call (the worker counts them in the
    telemetry totals Elixir sees)."""

    def __init__(self, token: str, on_reject: Callable[[str], None] | None = None) -> None:
        self._expected = (SCHEME + check_token(token)).encode("ascii")
        self._on_reject = on_reject
        self.rejected = 0
        self._logged_at = -LOG_EVERY_S

    def authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == METADATA_KEY:
                got = value.encode("latin-1", "replace") if isinstance(value, str) else value
                return hmac.compare_digest(got, self._expected)
        return False

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if self.authorized(details.invocation_metadata):
            return await continuation(details)
        self.rejected += 1
        if self._on_reject is not None:
            self._on_reject(details.method)
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            _log.warning(
                "refused an unauthenticated call to %s (%d refused so far)",
                details.method,
                self.rejected,
            )
        handler = await continuation(details)
        shape = (
            (handler.request_streaming, handler.response_streaming) if handler else (False, False)
        )
        return _REFUSALS[shape]
