#!/usr/bin/env bash
# Installs what the project needs and is missing, then fetches dependencies:
# - Elixir and Erlang headers from Debian (when running as root),
# - a project-local Python virtualenv (.venv) from priv/python/requirements-dev.txt,
# - the stubs' compiler in its own virtualenv (.venv-proto) from
#   priv/python/requirements-proto.txt,
# - the Rust crates (cargo fetch),
# - the Python worker's native encoder (scripts/build_speedups.sh).
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: $1 is missing; install it (Debian: apt-get install $2) or run this as root." >&2
    exit 1
  fi
}

apt_install() {
  need_root "$1" "$2"
  say "installing Debian packages: $2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq $2 >/dev/null
}

# Elixir 1.14+ / OTP 25+ with the NIF headers (erl_nif.h).
erl_root() { erl -noshell -eval 'io:format("~s", [code:root_dir()]), halt().' 2>/dev/null; }
if ! command -v mix >/dev/null 2>&1 || ! command -v erl >/dev/null 2>&1 ||
  [ ! -f "$(erl_root)/usr/include/erl_nif.h" ]; then
  apt_install "Elixir/Erlang" "elixir erlang-dev"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is missing. Install Rust ${RUST_MIN:-1.91}+ with rustup, then run this again." >&2
  exit 1
fi

# Project-local virtualenv, rebuilt when the requirements change.
req=priv/python/requirements-dev.txt
stamp=.venv/.requirements.sha256
want=$(cat priv/python/requirements.txt "$req" | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install "python3-venv" "python3-venv"
  fi
  say "creating .venv from $req"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi

# The pinned grpcio-tools of scripts/gen_proto.py and its drift test: it needs
# protobuf<5, so it cannot share .venv, which has the newest protobuf.
proto_req=priv/python/requirements-proto.txt
proto_stamp=.venv-proto/.requirements.sha256
proto_want=$(sha256sum "$proto_req" | cut -d' ' -f1)
if [ ! -x .venv-proto/bin/python ] || [ "$(cat "$proto_stamp" 2>/dev/null)" != "$proto_want" ]; then
  say "creating .venv-proto from $proto_req"
  rm -rf .venv-proto
  python3 -m venv .venv-proto
  .venv-proto/bin/python -m pip install --quiet --disable-pip-version-check -r "$proto_req"
  echo "$proto_want" >"$proto_stamp"
fi

say "fetching Rust crates"
cargo fetch --locked --quiet

say "building the worker's native encoder (snakepit_bridge.telemetry._speedups)"
scripts/build_speedups.sh
