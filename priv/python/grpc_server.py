#!/usr/bin/env python3
"""The Snakepit Python worker: ``BridgeService`` on a ``grpc.aio`` server.

::

    python priv/python/grpc_server.py --port 0 [--host 127.0.0.1] [--max-buffer 4096]
        [--max-batch 512] [--max-frame-bytes 4194304] [--max-delay-ms 5] [--worker-id ID]
        [--shutdown-grace 2.0] [--ignore-stdin] [--switch-interval 0.001]
        [--tool-module MODULE ...] [--demo-tools]
        (--auth-token-stdin | --auth-token-file PATH | --no-auth)
        [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]

The code lives in :mod:`snakepit_bridge.server` (codec, service, auth,
lifecycle, app); this script only runs it.

Authentication (:mod:`snakepit_bridge.server.auth`): every RPC must carry the
metadata ``authorization: Bearer <token>`` with the worker's token, else it is
refused with ``UNAUTHENTICATED`` (counted; sent to Elixir as
``auth_rejected_total`` with the telemetry totals). ``Snakepit.GRPCWorker``
writes a fresh random token as the first line of stdin
(``--auth-token-stdin``); by hand, use ``--auth-token-file PATH`` (a 0600 file
of this user, deleted once read) or ``--no-auth`` (development only: it logs a
warning). One of the three is required.

TLS (for workers on other hosts): ``--tls-cert`` and ``--tls-key`` serve TLS
(grpcio's SSL server credentials); ``--tls-client-ca`` also requires every
client to present a certificate signed by that CA (mutual TLS). Without them
the port is plain text: keep ``--host`` on a loopback address then.

RPCs (``priv/proto/snakepit_bridge.proto``, package ``snakepit.bridge``):

* ``Ping`` -- ``PingResponse{message: "pong: <message>", server_time}``;
* ``ExecuteTool`` -- runs a tool of :mod:`snakepit_bridge.tools`; see below.
  ``--tool-module`` (repeatable) and the environment variable
  ``SNAKEPIT_TOOL_MODULES`` (comma-separated) name more modules to import at
  start-up; they register their tools with ``@snakepit_bridge.tools.tool``.
  Only ``ping`` is built in; ``--demo-tools`` loads
  :mod:`snakepit_bridge.demo_tools` (the demo's and the tests' tools);
* ``StreamTelemetry`` -- one ``TelemetryEvent`` per frame (the reference RPC);
* ``StreamTelemetryBatched`` -- ``TelemetryEventBatch`` frames (up to
  ``--max-batch`` events plus the worker's running totals).
  Both telemetry RPCs are served by one :class:`TelemetryStream` (buffer of
  ``--max-buffer`` events); a new (authenticated) stream replaces the one
  attached before, so a client that lost its connection half-way is never
  locked out by the dead stream; a caller without the token never opens one. No
  frame exceeds ``--max-frame-bytes`` (the client's decoding limit; 4 MiB like
  the Rust side's default): an event that alone would is dropped and counted.
  Events are coalesced: a frame goes out when a batch is full or when the
  oldest buffered event has waited ``--max-delay-ms`` (5 ms by default; ``0``
  sends each event at once), so a steady rate costs one message per delay,
  not one per event.

Telemetry backend: a :class:`GrpcBackend` feeding that stream, installed at
start-up, unless ``PYTHON_SNAKEPIT_TELEMETRY`` is ``stderr`` (``TELEMETRY:{json}``
lines on stderr) or ``off`` (no telemetry).

Readiness: once the port is bound and the server started, the worker prints
exactly one line to stdout and flushes it::

    SNAKEPIT_READY {"port": 50051, "pid": 12345}

(JSON with exactly the keys ``port`` -- the bound port, the chosen one when
``--port 0`` -- and ``pid``.) Nothing else is written to stdout; logs go to
stderr. If the port cannot be bound the worker exits with status 1 and no
ready line.

Lifecycle: the worker shuts down gracefully and exits with status 0 on SIGTERM
or SIGINT, when stdin reaches end-of-file (the Elixir port closes the pipe when
its owner or the BEAM dies; pass ``--ignore-stdin`` when starting the worker
with stdin at end-of-file, e.g. from ``/dev/null``), or when its parent process
goes away (``os.getppid()`` changes; checked every 0.5 s). Graceful shutdown:
new ``ExecuteTool`` calls are refused (``UNAVAILABLE``), calls in progress get
up to ``--shutdown-grace`` seconds, the telemetry stream sends what is buffered
and ends, then the server stops.

ExecuteTool encoding (as the reference Snakepit): each ``parameters`` value is a
``google.protobuf.Any`` with ``type_url`` ``type.googleapis.com/google.protobuf.StringValue``
and ``value`` the raw JSON bytes of the parameter; the result is encoded the
same way. ``success``, ``error_message`` (``"<ExceptionType>: <message>"``, or
just the message for an unknown tool, a bad parameter or a
:class:`~snakepit_bridge.tools.ToolError`) and ``execution_time_ms`` are set;
``metadata`` carries ``correlation_id`` when there is one. The correlation id
is taken from the gRPC metadata ``x-snakepit-correlation-id``, else the request
metadata ``correlation_id``.

Latency: the telemetry stream is drained by the server's event loop thread,
which competes for the GIL with the threads that run tools. Python hands the
GIL over every ``sys.getswitchinterval()`` seconds (5 ms by default), so a
CPU-bound tool thread could hold events back for that long, several times per
event. The worker sets it to ``--switch-interval`` (1 ms by default; ``0``
keeps Python's value), which cuts that delay about fivefold at a small cost in
GIL hand-overs (see ``bench/emit_bench.py``, ``latency_busy_*``).

Telemetry of a call: see :mod:`snakepit_bridge.server.service`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

try:
    from snakepit_bridge.server.app import (  # noqa: E402
        DEFAULT_SWITCH_INTERVAL,
        READY_PREFIX,
        main,
        parse_args,
        serve,
        start_server,
    )
except ModuleNotFoundError as _missing:
    if __name__ != "__main__":
        raise
    # A dependency (grpcio, protobuf, psutil) is not installed: one line
    # that says what and how to fix it, instead of a traceback.
    from snakepit_bridge.server.logs import missing_module_line  # noqa: E402

    print(missing_module_line(_missing, str(_HERE / "requirements.txt")), file=sys.stderr)
    sys.exit(1)
from snakepit_bridge.server.codec import (  # noqa: E402
    JSON_TYPE_URL,
    ParameterError,
    decode_parameters,
    encode_json,
)
from snakepit_bridge.server.service import (  # noqa: E402
    CORRELATION_HEADER,
    MAX_TRACEBACK_BYTES,
    BridgeService,
    add_bridge_service,
)

__all__ = [
    "CORRELATION_HEADER",
    "DEFAULT_SWITCH_INTERVAL",
    "JSON_TYPE_URL",
    "MAX_TRACEBACK_BYTES",
    "READY_PREFIX",
    "BridgeService",
    "ParameterError",
    "add_bridge_service",
    "decode_parameters",
    "encode_json",
    "main",
    "parse_args",
    "serve",
    "start_server",
]

if __name__ == "__main__":
    sys.exit(main())
