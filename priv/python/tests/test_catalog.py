"""snakepit_bridge.catalog: loading, lookups, the canonical summary and its CLI."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON_ROOT, subprocess_env

from snakepit_bridge import catalog

CATALOG_FILE = PYTHON_ROOT.parent / "catalog" / "telemetry_catalog.json"
RAW = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))


def test_default_location_is_priv_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(catalog.ENV_VAR, raising=False)
    assert catalog._default_path() == CATALOG_FILE.resolve()


def test_python_events_are_exactly_the_catalog_python_names() -> None:
    expected = {e["python_name"] for e in RAW["events"] if "python_name" in e}
    assert catalog.python_events() == frozenset(expected)
    assert isinstance(catalog.python_events(), frozenset)
    assert {"python.call.start", "tool.result_size", "tool.execution.stop"} <= expected


@pytest.mark.parametrize(
    ("python_name", "elixir"),
    [
        ("python.call.start", ("snakepit", "python", "call", "start")),
        ("tool.execution.stop", ("snakepit", "python", "tool", "execution", "stop")),
        ("tool.result_size", ("snakepit", "python", "tool", "result_size")),
    ],
)
def test_elixir_event_maps_python_names(python_name: str, elixir: tuple[str, ...]) -> None:
    assert catalog.elixir_event(python_name) == elixir


@pytest.mark.parametrize(
    "name", ["python.bogus.event", "snakepit.python.call.start", "pool.initialized", ""]
)
def test_elixir_event_is_none_for_unknown_names(name: str) -> None:
    assert catalog.elixir_event(name) is None


def test_every_python_event_maps_under_snakepit_python() -> None:
    for name in catalog.python_events():
        assert catalog.elixir_event(name)[:2] == ("snakepit", "python"), name


def test_key_allowlists_match_the_file() -> None:
    assert catalog.measurement_keys() == frozenset(RAW["measurement_keys"])
    assert catalog.metadata_keys() == frozenset(RAW["metadata_keys"])
    assert "duration" in catalog.measurement_keys()
    assert {"error_type", "error_message", "tool"} <= catalog.metadata_keys()


def test_limits_are_a_fresh_copy() -> None:
    limits = catalog.limits()
    assert limits == RAW["limits"]
    limits["max_metadata_value_bytes"] = 1
    assert catalog.limits()["max_metadata_value_bytes"] == RAW["limits"]["max_metadata_value_bytes"]


def test_summary_is_canonical() -> None:
    def dotted(parts: list[str]) -> str:
        return ".".join(parts)

    expected = {
        "events": sorted(dotted(e["event"]) for e in RAW["events"]),
        "python_map": sorted(
            f"{e['python_name']}=>{dotted(e['event'])}" for e in RAW["events"] if "python_name" in e
        ),
        "measurement_keys": sorted(RAW["measurement_keys"]),
        "metadata_keys": sorted(RAW["metadata_keys"]),
    }
    summary = catalog.summary()
    assert summary == expected
    assert len(summary["events"]) == len(RAW["events"])  # all layers, not only Python's
    assert "snakepit.pool.worker.spawned" in summary["events"]
    assert "tool.result_size=>snakepit.python.tool.result_size" in summary["python_map"]
    json.dumps(summary)  # JSON-able


def _run_cli(python: str, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "snakepit_bridge.catalog", *args],
        cwd=PYTHON_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_the_summary_as_one_compact_sorted_line(python: str) -> None:
    result = _run_cli(python, "--summary")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # Elixir reads stdout and stderr together
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("\n")
    line = result.stdout.rstrip("\n")
    assert json.loads(line) == catalog.summary()
    assert line == json.dumps(catalog.summary(), sort_keys=True, separators=(",", ":"))


def test_defaults_are_the_catalog_section() -> None:
    want = {k: v for k, v in RAW["defaults"].items() if not k.startswith("_")}
    assert catalog.defaults() == want
    assert set(want) == {"max_frame_bytes", "max_batch_events", "max_delay_ms", "tool_timeout_ms"}


def test_cli_without_an_action_is_a_usage_error(python: str) -> None:
    result = _run_cli(python)
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_env_var_overrides_the_location(python: str, tmp_path: Path) -> None:
    small = {
        "limits": {"max_metadata_value_bytes": 10},
        "defaults": RAW["defaults"],
        "measurement_keys": ["b", "a"],
        "metadata_keys": ["z"],
        "events": [
            {"event": ["snakepit", "python", "x", "start"], "python_name": "x.start"},
            {"event": ["snakepit", "pool", "up"]},
        ],
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(small), encoding="utf-8")
    result = _run_cli(python, "--summary", SNAKEPIT_TELEMETRY_CATALOG=str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "events": ["snakepit.pool.up", "snakepit.python.x.start"],
        "python_map": ["x.start=>snakepit.python.x.start"],
        "measurement_keys": ["a", "b"],
        "metadata_keys": ["z"],
    }


def test_missing_catalog_fails_loudly_at_import(python: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = _run_cli(python, "--summary", SNAKEPIT_TELEMETRY_CATALOG=str(missing))
    assert result.returncode != 0
    assert "CatalogError" in result.stderr
    assert str(missing) in result.stderr and catalog.ENV_VAR in result.stderr


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{not json", "cannot read"),
        ("[]", "must be a JSON object"),
        ('{"limits": {}, "events": {}}', "'events' must be a list"),
        ('{"events": [], "limits": {"a": "1"}}', "'limits'"),
        ('{"events": [{"event": "a.b"}], "limits": {}}', "events[0].event"),
        (
            '{"events": [{"event": ["a"], "python_name": "x"},'
            ' {"event": ["b"], "python_name": "x"}], "limits": {}}',
            "appears twice",
        ),
        ('{"events": [], "limits": {}, "measurement_keys": [1]}', "measurement_keys"),
    ],
)
def test_malformed_catalogs_are_rejected(tmp_path: Path, content: str, complaint: str) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(catalog.CatalogError, match=re.escape(complaint)):
        catalog._load(path)
