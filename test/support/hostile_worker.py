"""A hostile telemetry peer for the hardening tests (test/snakepit/telemetry/
hostile_input_test.exs).

It serves the worker's telemetry RPCs (``StreamTelemetryBatched`` and
``StreamTelemetry``) with grpcio, as a real worker does, but writes raw bytes
of its own choosing on the stream: the Elixir side must treat every byte a
worker sends as untrusted. Each stream repeats, every ``--interval-ms``:
one hostile frame (``--mode``), then one valid batch of ``--good`` events, so a
test sees both the rejection and that the stream goes on.

Modes:

* ``huge_frame``: one frame of ``--bytes`` bytes (default 10 MB), over the
  client's maximum message size;
* ``many_keys``: one event with ``--keys`` metadata entries (a million by
  default: about 14 MB, over the maximum too; 200,000 fit within 4 MiB and
  must be refused as too many metadata entries);
* ``garbage``: frames of random bytes and a batch holding a truncated event;
* ``extreme``: valid events whose measurements are extreme numbers (1e300,
  the largest double, int64 limits, numeric strings) in a batch claiming
  hostile running totals (2**64 - 1, source ids that alternate), then the
  good batch;
* ``flap``: accepts each stream and ends it at once, sending nothing;
* ``replay``: sends the frames of ``--frames FILE`` (each a 4-byte
  big-endian length and the frame) once, then keeps the stream open: the
  property test of the ingest generates them;
* ``idle``: keeps each stream open and sends nothing. With
  ``--min-ping-interval-ms`` the server refuses client pings more frequent
  than that (grpcio's policy, default 5 minutes; GOAWAY after 2 strikes).

Prints ``HOSTILE_READY <port>`` once it listens; exits when stdin closes.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import threading
import time
from concurrent import futures

import grpc

from snakepit_bridge.telemetry.wire import varint

SERVICE = "snakepit.bridge.BridgeService"


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def event(name: str, metadata: list[tuple[bytes, bytes]] = ()) -> bytes:
    parts = b"".join(field(1, p.encode()) for p in name.split("."))
    entries = b"".join(field(3, field(1, k) + field(2, v)) for k, v in metadata)
    return parts + entries


def batch(events: list[bytes], totals: dict[int, int] | None = None) -> bytes:
    body = b"".join(field(1, e) for e in events)
    for number, value in (totals or {}).items():
        body += varint(number << 3) + varint(value)
    return body


def value(v: int | float | str) -> bytes:
    """A TelemetryValue: int64 (two's complement varint), double or string."""
    if isinstance(v, int):  # bool included
        return varint(1 << 3) + varint(v & (2**64 - 1))
    if isinstance(v, float):
        return varint(2 << 3 | 1) + struct.pack("<d", v)
    return field(3, v.encode())


def measured(name: str, measurements: dict[str, int | float | str]) -> bytes:
    parts = b"".join(field(1, p.encode()) for p in name.split("."))
    return parts + b"".join(
        field(2, field(1, k.encode()) + field(2, value(v))) for k, v in measurements.items()
    )


EXTREMES: list[int | float | str] = [
    1.0e300,
    -1.0e300,
    1.7976931348623157e308,
    5e-324,
    -0.0,
    2**63 - 1,
    -(2**63),
    "1e300",
    "-9223372036854775808",
]


def extreme_frames(round_: int) -> list[bytes]:
    """Each extreme number as a duration (converted to native units) and as a
    plain measurement, under hostile totals."""
    events = [measured("python.call.stop", {"duration": v, "bytes": v}) for v in EXTREMES]
    events += [measured("tool.execution.stop", {"duration": v}) for v in EXTREMES]
    totals = {2: 2**64 - 1, 3: 2**64 - 1, 4: 2**63, 5: 2**64 - 2, 6: 1, 7: 1 + round_ % 2}
    return [batch(events, totals)]


def replay_frames(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    frames, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at : at + 4], "big")
        frames.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return frames


def hostile_frame(args: argparse.Namespace, rng: random.Random) -> list[bytes]:
    if args.mode == "flap":
        return []
    if args.mode == "huge_frame":
        # A valid batch of one event whose metadata value is enormous.
        value = b"x" * args.bytes
        return [batch([event("python.call.start", [(b"blob", value)])])]
    if args.mode == "many_keys":
        keys = [(b"k%d" % i, b"v") for i in range(args.keys)]
        return [batch([event("python.call.start", keys)])]
    good = event("python.call.start")
    return [
        bytes(rng.getrandbits(8) for _ in range(64)),
        batch([good[:-2] + b"\xff", good]),  # a broken event, then a good one
    ]


def serve(args: argparse.Namespace) -> grpc.Server:
    rng = random.Random(args.seed)
    hostile = hostile_frame(args, rng)
    good = batch([event("python.call.start")] * args.good)

    def drain(requests) -> None:
        try:
            for _ in requests:
                pass
        except grpc.RpcError:
            pass  # the client went away: expected

    def stream(request_iterator, context):
        if args.mode == "flap":
            return  # ends the stream at once: the client sees it close
        if args.mode == "replay":
            threading.Thread(target=drain, args=(request_iterator,), daemon=True).start()
            yield from replay_frames(args.frames)
            while context.is_active():
                time.sleep(0.05)
            return
        if args.mode == "idle":
            context.send_initial_metadata(())  # the stream is open
            drain(request_iterator)  # until the client goes away
            return
        # Read the client's control frames in the background, as a worker does.
        threading.Thread(target=drain, args=(request_iterator,), daemon=True).start()
        round_ = 0
        while context.is_active():
            yield from extreme_frames(round_) if args.mode == "extreme" else hostile
            yield good
            round_ += 1
            time.sleep(args.interval_ms / 1000)

    handler = grpc.stream_stream_rpc_method_handler(stream)  # raw bytes both ways
    options = [("grpc.max_send_message_length", -1)]
    if args.min_ping_interval_ms is not None:
        options.append(("grpc.http2.min_ping_interval_without_data_ms", args.min_ping_interval_ms))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"StreamTelemetryBatched": handler, "StreamTelemetry": handler}
            ),
        )
    )
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"HOSTILE_READY {port}", flush=True)
    return server


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--mode",
        choices=["huge_frame", "many_keys", "garbage", "extreme", "flap", "idle", "replay"],
        required=True,
    )
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bytes", type=int, default=10_000_000)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--good", type=int, default=10)
    p.add_argument("--interval-ms", type=float, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-ping-interval-ms", type=int, default=None)
    p.add_argument("--frames", default=None, help="replay: the frames file")
    server = serve(p.parse_args())
    sys.stdin.read()  # until the test's port closes
    server.stop(0)


if __name__ == "__main__":
    main()
