"""Checks a Python environment for Snakepit workers (``mix snakepit.doctor``).

    python env_check.py REQUIREMENTS_FILE [ADAPTER_MODULE ...]

Standard library only: it must run where nothing is installed. Prints one
line per check, ``<check>\\t<ok|fail>\\t<detail>``, and exits 0; the caller
decides what a failure means. Run it with the worker's ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys

#: The interpreter the worker is written and tested for.
MIN_PYTHON = (3, 11)

#: The module each required distribution provides (imported to catch a
#: broken install).
MODULES = {"grpcio": "grpc", "protobuf": "google.protobuf", "psutil": "psutil"}

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(?:#.*)?$")


def report(check: str, ok: bool, detail: str) -> None:
    flat = " ".join(detail.split())
    print(f"{check}\t{'ok' if ok else 'fail'}\t{flat}", flush=True)


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def satisfies(version: str, spec: str) -> bool:
    """``spec`` is a comma-separated list of ``>=``, ``<``, ``==`` bounds."""
    have = version_tuple(version)
    for bound in filter(None, (b.strip() for b in spec.split(","))):
        op, want = re.match(r"(>=|<=|==|<|>|~=)?\s*(.*)", bound).groups()
        want_v = version_tuple(want)
        ok = {
            ">=": have >= want_v,
            "~=": have >= want_v,
            "<=": have <= want_v,
            ">": have > want_v,
            "<": have < want_v,
            "==": have[: len(want_v)] == want_v,
        }.get(op or "==", True)
        if not ok:
            return False
    return True


def requirements(path: str) -> list[tuple[str, str]]:
    found = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip().startswith(("#", "-")) or not line.strip():
                continue
            match = _REQUIREMENT.match(line)
            if match:
                found.append((match.group(1), match.group(2)))
    return found


def check_python() -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    report("python", ok, f"{version} at {sys.executable}")


def check_requirement(name: str, spec: str) -> None:
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        report(f"package {name}", False, f"not installed (needs {name}{spec})")
        return
    if not satisfies(version, spec):
        report(f"package {name}", False, f"{version} installed, needs {name}{spec}")
        return
    module = MODULES.get(name)
    if module:
        try:
            importlib.import_module(module)
        except Exception as exc:
            detail = f"{version} installed but `import {module}` fails: {exc}"
            report(f"package {name}", False, detail)
            return
    report(f"package {name}", True, f"{version} ({name}{spec})")


def check_import(check: str, module: str) -> None:
    try:
        imported = importlib.import_module(module)
    except Exception as exc:
        report(check, False, f"`import {module}` fails: {type(exc).__name__}: {exc}")
        return
    report(check, True, getattr(imported, "__file__", None) or module)


def main(argv: list[str]) -> int:
    requirements_file, adapters = argv[0], argv[1:]
    check_python()
    for name, spec in requirements(requirements_file):
        check_requirement(name, spec)
    # The worker's own code and its generated stubs (a protobuf runtime too
    # old for them fails here).
    check_import("snakepit_bridge", "snakepit_bridge.server.app")
    for module in adapters:
        check_import(f"adapter {module}", module)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
