"""The committed stubs are exactly what scripts/gen_proto.py generates from the
.proto, they force no grpcio/protobuf version, and they import as
``snakepit_bridge.proto.*``.

The drift tests need the pinned grpcio-tools (requirements-proto.txt), which
lives in its own virtualenv, .venv-proto (scripts/setup.sh makes it): they are
skipped, saying so, only where no interpreter has it, and fail instead under CI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import PYTHON_ROOT, subprocess_env

SCRIPT = PYTHON_ROOT / "scripts" / "gen_proto.py"


def load_script():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("gen_proto", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gen() -> ModuleType:
    """gen_proto.py as a module, once the pinned grpcio-tools is found."""
    module = load_script()
    try:
        module.tools_python()
    except module.ToolsMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the drift test: {exc}")
        pytest.skip(f"no drift test without the pinned grpcio-tools: {exc}")
    return module


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_committed_stubs_match_a_fresh_generation(gen: ModuleType, tmp_path: Path) -> None:
    written = gen.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(gen.GENERATED)
    for name in gen.GENERATED:
        fresh = (tmp_path / name).read_bytes()
        committed = (gen.STUB_DIR / name).read_bytes()
        assert committed == fresh, f"{name} is stale: run python scripts/gen_proto.py"


def test_check_mode_reports_stale_stubs(gen: ModuleType, tmp_path: Path) -> None:
    gen.generate(tmp_path)
    assert gen.stale_files(tmp_path) == []
    (tmp_path / "snakepit_bridge_pb2.py").write_text("# edited by hand\n")
    assert gen.stale_files(tmp_path) == ["snakepit_bridge_pb2.py"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(tmp_path)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "stale" in result.stderr


def test_without_the_pinned_grpcio_tools_the_script_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        env=subprocess_env(SNAKEPIT_PROTO_PYTHON=str(missing)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    pin = load_script().pinned_tools_version()
    assert f"grpcio-tools=={pin}" in result.stderr and str(missing) in result.stderr
    assert "requirements-proto.txt" in result.stderr and ".venv-proto" in result.stderr


def test_stubs_force_no_grpcio_or_protobuf_version() -> None:
    """Why grpcio-tools is pinned where it is (requirements-proto.txt): newer
    ones write stubs that refuse an older grpcio or another protobuf major."""
    stubs = load_script().STUB_DIR
    messages = (stubs / "snakepit_bridge_pb2.py").read_text("utf-8")
    services = (stubs / "snakepit_bridge_pb2_grpc.py").read_text("utf-8")
    assert "_runtime_version" not in messages
    assert "GRPC_GENERATED_VERSION" not in services


def test_protobuf_lower_bound_is_not_below_the_gencode_version() -> None:
    """protobuf supports gencode only on a runtime at least as new as it."""
    messages = (load_script().STUB_DIR / "snakepit_bridge_pb2.py").read_text("utf-8")
    gencode = re.search(r"^# Protobuf Python Version: (\S+)$", messages, re.MULTILINE)
    requirements = (PYTHON_ROOT / "requirements.txt").read_text("utf-8")
    bound = re.search(r"^protobuf>=([0-9.]+)", requirements, re.MULTILINE)
    assert gencode and bound
    assert version(bound.group(1)) >= version(gencode.group(1))


def test_stubs_import_as_a_subpackage_with_the_wire_names() -> None:
    from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
    from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc

    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    assert service.full_name == "snakepit.bridge.BridgeService"
    assert [m.name for m in service.methods] == [
        "Ping",
        "ExecuteTool",
        "StreamTelemetry",
        "StreamTelemetryBatched",
    ]
    assert hasattr(pb_grpc, "BridgeServiceStub") and hasattr(pb_grpc, "BridgeServiceServicer")
    fields = {f.name: f.number for f in pb.TelemetryEvent.DESCRIPTOR.fields}
    assert fields == {
        "event_parts": 1,
        "measurements": 2,
        "metadata": 3,
        "timestamp_ns": 4,
        "correlation_id": 5,
    }


def test_stubs_import_in_a_fresh_interpreter() -> None:
    code = (
        "from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as g;"
        "print(g.snakepit__bridge_dot_proto_dot_snakepit__bridge__pb2.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PYTHON_ROOT,
        env=subprocess_env(PYTHONPATH=str(PYTHON_ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "snakepit_bridge.proto.snakepit_bridge_pb2"
