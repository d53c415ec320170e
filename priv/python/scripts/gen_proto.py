#!/usr/bin/env python3
"""Regenerates the Python stubs of the wire contract.

    python priv/python/scripts/gen_proto.py            # rewrite the committed stubs
    python priv/python/scripts/gen_proto.py --check    # exit 1 if they are stale
    python priv/python/scripts/gen_proto.py --out DIR  # write them somewhere else

Input: ``priv/proto/snakepit_bridge.proto`` (the one wire contract; never edit
the stubs by hand). Output, in ``priv/python/snakepit_bridge/proto/``:

* ``snakepit_bridge_pb2.py``      -- messages (``--python_out``)
* ``snakepit_bridge_pb2.pyi``     -- type stubs for editors (``--pyi_out``)
* ``snakepit_bridge_pb2_grpc.py`` -- ``BridgeServiceStub`` / ``Servicer`` (``--grpc_python_out``)

Imports: ``protoc`` names modules after the ``.proto`` file's path relative to
the include root, and ``_pb2_grpc`` imports ``_pb2`` by that name. Rather than
post-processing the output, the ``.proto`` is copied into a temporary include
root at ``snakepit_bridge/proto/snakepit_bridge.proto``, so the generated import
is the package-absolute ``from snakepit_bridge.proto import snakepit_bridge_pb2``
and the stubs are byte-for-byte what ``protoc`` wrote. (The descriptor's file
name becomes ``snakepit_bridge/proto/snakepit_bridge.proto``; the protobuf
package ``snakepit.bridge`` and so the wire format and the gRPC method paths
such as ``/snakepit.bridge.BridgeService/StreamTelemetry`` do not change.)

The compiler is the one bundled with the pinned ``grpcio-tools`` (see
``requirements-dev.txt``); the stubs record its version, so a different
``grpcio-tools`` produces different bytes and ``tests/test_proto_stubs.py``
fails until the pin and the stubs are updated together.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PYTHON_ROOT = Path(__file__).resolve().parents[1]
PROTO_FILE = PYTHON_ROOT.parent / "proto" / "snakepit_bridge.proto"
PACKAGE_PATH = Path("snakepit_bridge") / "proto"
STUB_DIR = PYTHON_ROOT / PACKAGE_PATH
GENERATED = ("snakepit_bridge_pb2.py", "snakepit_bridge_pb2.pyi", "snakepit_bridge_pb2_grpc.py")


def generate(out_dir: Path, proto_file: Path = PROTO_FILE) -> list[Path]:
    """Runs protoc on ``proto_file`` and writes the stubs into ``out_dir``
    (created if needed); returns the paths written. Raises RuntimeError if
    protoc fails."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="snakepit-proto-") as tmp:
        include = Path(tmp) / "include"
        staged = include / PACKAGE_PATH / proto_file.name
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto_file, staged)
        gen = Path(tmp) / "gen"
        gen.mkdir()
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{include}",
                f"-I{well_known}",
                f"--python_out={gen}",
                f"--pyi_out={gen}",
                f"--grpc_python_out={gen}",
                str(staged.relative_to(include)),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code} on {proto_file}")
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(gen / PACKAGE_PATH / name, target)
            written.append(target)
    return written


def stale_files(stub_dir: Path = STUB_DIR) -> list[str]:
    """Names of the committed stubs that differ from a fresh generation."""
    with tempfile.TemporaryDirectory(prefix="snakepit-proto-check-") as tmp:
        fresh = Path(tmp)
        generate(fresh)
        return [
            name
            for name in GENERATED
            if not (stub_dir / name).is_file()
            or (stub_dir / name).read_bytes() != (fresh / name).read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=STUB_DIR, help=f"default: {STUB_DIR}")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print(f"stale: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
            return 1
        print("stubs are up to date")
        return 0
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
