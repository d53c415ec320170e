#!/usr/bin/env bash
# Runs the Python suite against the lowest versions the worker supports: the
# lower bounds of priv/python/requirements.txt, pinned exactly in
# priv/python/requirements-lowest.txt (with the test tools' lower bounds), in
# a second virtualenv, .venv-lowest (made on the first run and whenever that
# file or the interpreter changes; reused otherwise).
#   scripts/test_python_lowest.sh [PYTEST_ARGS...]
# Exits with pytest's status. PYTHON names the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

python=${PYTHON:-python3}
venv=.venv-lowest
req=priv/python/requirements-lowest.txt
stamp=$venv/.requirements.sha256
want=$({ cat "$req" && "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  section "creating $venv from $req"
  rm -rf "$venv"
  "$python" -m venv "$venv" &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" &&
    echo "$want" >"$stamp" || {
    echo "error: could not make $venv from $req" >&2
    exit 1
  }
fi

section "pytest with the lowest supported versions ($venv)"
"$venv/bin/python" - "$req" <<'PY' || exit 1
import importlib.metadata as m, re, sys
print("python", sys.version.split()[0])
wrong = []
for line in open(sys.argv[1], encoding="utf-8"):
    found = re.match(r"\s*([A-Za-z0-9_.\-]+)==(\S+)", line)
    if found:
        name, want = found.groups()
        have = m.version(name)
        print(f"{name} {have}")
        if have != want:
            wrong.append(f"{name} {have} (pinned: {want})")
if wrong:
    sys.exit(f"error: .venv-lowest does not have the pins: {', '.join(wrong)}; remove it to rebuild")
PY

# An absolute interpreter path: with a relative one (../../.venv-lowest/...)
# sys.executable keeps the "..", and tests comparing it with what a worker
# subprocess reports (normalised) fail.
root=$PWD
# Without the native encoder (and without orjson, which this venv lacks): the
# pure-Python paths get the whole suite too.
export SNAKEPIT_BRIDGE_PURE_PYTHON=1
cd priv/python && exec "$root/$venv/bin/python" -m pytest -q "$@"
