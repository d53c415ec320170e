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

The compiler is the one bundled with ``grpcio-tools``, pinned exactly in
``requirements-proto.txt`` (which says why that version: its stubs carry no
grpcio/protobuf version check, so they load with every version
``requirements.txt`` allows). A different ``grpcio-tools`` produces different
bytes, and ``tests/test_proto_stubs.py`` fails until the pin and the stubs are
updated together. That ``grpcio-tools`` needs protobuf<5, so it is not in the
project's ``.venv`` (the newest protobuf) but in its own virtualenv,
``.venv-proto`` at the repository root (``scripts/setup.sh`` makes it). This
script runs protoc with the first interpreter that has the pinned version:
``$SNAKEPIT_PROTO_PYTHON`` if set (then only that one), else
``.venv-proto/bin/python``, else the one running the script; with none it
exits 2, saying how to make ``.venv-proto``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PYTHON_ROOT.parents[1]
PROTO_FILE = PYTHON_ROOT.parent / "proto" / "snakepit_bridge.proto"
PACKAGE_PATH = Path("snakepit_bridge") / "proto"
STUB_DIR = PYTHON_ROOT / PACKAGE_PATH
GENERATED = ("snakepit_bridge_pb2.py", "snakepit_bridge_pb2.pyi", "snakepit_bridge_pb2_grpc.py")
#: Pins the ``grpcio-tools`` that writes the committed stubs.
TOOLS_REQUIREMENTS = PYTHON_ROOT / "requirements-proto.txt"
#: The virtualenv that has it (``scripts/setup.sh`` makes it).
TOOLS_VENV = REPO_ROOT / ".venv-proto"
#: Names the interpreter to run protoc with instead (it must have the pin).
TOOLS_PYTHON_ENV = "SNAKEPIT_PROTO_PYTHON"

_VERSION_OF_TOOLS = "import importlib.metadata as m; print(m.version('grpcio-tools'))"


class ToolsMissing(RuntimeError):
    """No interpreter at hand has the pinned ``grpcio-tools``."""


def pinned_tools_version(requirements: Path = TOOLS_REQUIREMENTS) -> str:
    """The ``X`` of the ``grpcio-tools==X`` line in ``requirements``."""
    found = re.search(r"^grpcio-tools==(\S+)", requirements.read_text("utf-8"), re.MULTILINE)
    if not found:
        raise ValueError(f"{requirements} has no grpcio-tools==VERSION line")
    return found.group(1)


def _tools_version(python: str) -> str | None:
    """The ``grpcio-tools`` version installed for ``python``; None if it has
    none or cannot be run."""
    try:
        result = subprocess.run(
            [python, "-c", _VERSION_OF_TOOLS], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def tools_python() -> str:
    """An interpreter with the pinned ``grpcio-tools``: ``$SNAKEPIT_PROTO_PYTHON``
    if set (then only that one), else ``.venv-proto``'s, else this one. Raises
    ToolsMissing, saying what was found and how to make ``.venv-proto``."""
    want = pinned_tools_version()
    explicit = os.environ.get(TOOLS_PYTHON_ENV)
    venv_python = TOOLS_VENV / "bin" / "python"
    if explicit:
        candidates = [explicit]
    else:
        candidates = [str(venv_python)] if venv_python.exists() else []
        candidates.append(sys.executable)
    found = []
    for python in candidates:
        have = _tools_version(python)
        if have == want:
            return python
        if have:
            found.append(f"{python} has grpcio-tools {have}")
        else:
            found.append(f"{python} has none" if Path(python).exists() else f"no {python}")
    requirements = TOOLS_REQUIREMENTS.relative_to(REPO_ROOT)
    raise ToolsMissing(
        f"grpcio-tools=={want} (pinned in {requirements}) is not installed "
        f"({'; '.join(found)}). Run scripts/setup.sh, or in {REPO_ROOT}: "
        f"python3 -m venv .venv-proto && .venv-proto/bin/python -m pip install -r {requirements}"
    )


def generate(out_dir: Path, proto_file: Path = PROTO_FILE) -> list[Path]:
    """Runs the pinned protoc (see ``tools_python``) on ``proto_file`` and
    writes the stubs into ``out_dir`` (created if needed); returns the paths
    written. Raises ToolsMissing without the pinned ``grpcio-tools``, and
    RuntimeError if protoc fails."""
    python = tools_python()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="snakepit-proto-") as tmp:
        include = Path(tmp) / "include"
        staged = include / PACKAGE_PATH / proto_file.name
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto_file, staged)
        gen = Path(tmp) / "gen"
        gen.mkdir()
        # `python -m grpc_tools.protoc` adds the include root of the
        # well-known types (google/protobuf/*.proto) bundled with it.
        result = subprocess.run(
            [
                python,
                "-m",
                "grpc_tools.protoc",
                f"-I{include}",
                f"--python_out={gen}",
                f"--pyi_out={gen}",
                f"--grpc_python_out={gen}",
                str(staged.relative_to(include)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"protoc ({python}) failed with exit code {result.returncode} on "
                f"{proto_file}: {result.stderr.strip()}"
            )
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
    try:
        return _run(args)
    except ToolsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
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
