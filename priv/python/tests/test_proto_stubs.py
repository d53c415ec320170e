"""The committed stubs are exactly what scripts/gen_proto.py generates from the
.proto, and they import as ``snakepit_bridge.proto.*``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import PYTHON_ROOT, subprocess_env

SCRIPT = PYTHON_ROOT / "scripts" / "gen_proto.py"


def load_script():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("gen_proto", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    gen = load_script()
    written = gen.generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(gen.GENERATED)
    for name in gen.GENERATED:
        fresh = (tmp_path / name).read_bytes()
        committed = (gen.STUB_DIR / name).read_bytes()
        assert committed == fresh, f"{name} is stale: run python scripts/gen_proto.py"


def test_check_mode_reports_stale_stubs(tmp_path: Path) -> None:
    gen = load_script()
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
