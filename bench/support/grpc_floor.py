"""The floor under every per-frame figure of bench (h), in the worker: what a
bare grpc.aio server-streaming RPC costs its server per message at a steady
rate, with no telemetry code at all (60-byte messages, a sync grpc client
in a child process reading them).

    grpc_floor.py RATE SECONDS

Prints one line: ``sleep_ns=<CPU per tick, asyncio.sleep alone>
send_ns=<CPU per tick, asyncio.sleep + one message>`` (server process, all
threads, from /proc/self/task/*/schedstat).
"""

import asyncio
import os
import sys
import time

import grpc

CLIENT = """
import sys, threading, grpc
ch = grpc.insecure_channel(sys.argv[1])
call = ch.stream_stream("/floor.F/S", request_serializer=lambda b: b,
                        response_deserializer=lambda b: b)
def requests():
    threading.Event().wait()
    yield b""
for _ in call(requests()):
    pass
"""


def cpu_ns() -> int:
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


async def main(rate: float, seconds: float) -> None:
    interval = 1.0 / rate
    results: dict[str, float] = {}

    async def paced(seconds: float):
        """Yields at `rate` for `seconds`; the CPU per tick goes to `results`."""
        due = t0 = time.monotonic()
        start, n = cpu_ns(), 0
        while time.monotonic() - t0 < seconds:
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            n += 1
            yield n
        results["last"] = (cpu_ns() - start) / max(n, 1)

    async def handler(request_iterator, context):
        async for _ in paced(seconds):  # the baseline: the loop's timers alone
            pass
        results["sleep"] = results["last"]
        async for _ in paced(seconds):
            yield b"x" * 60
        results["send"] = results["last"]
        done.set()

    def ident(b: bytes) -> bytes:
        return b

    done = asyncio.Event()
    server = grpc.aio.server()
    method = grpc.stream_stream_rpc_method_handler(
        handler, request_deserializer=ident, response_serializer=ident
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("floor.F", {"S": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, f"127.0.0.1:{port}"
    )
    try:
        await asyncio.wait_for(done.wait(), timeout=4 * seconds + 30)
    finally:
        client.kill()
        await client.wait()
        await server.stop(0)
    print(f"sleep_ns={results['sleep']:.0f} send_ns={results['send']:.0f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]), float(sys.argv[2])))
