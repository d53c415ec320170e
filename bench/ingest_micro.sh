#!/usr/bin/env bash
# Builds and runs bench/ingest_micro (decode + validate per event, no BEAM):
# the former prost path against the single borrowing pass the NIF uses. Its build directory is
# _build/bench/ingest_micro; the first build compiles its crates (~1-2 min).
#
#   bench/ingest_micro.sh [events-per-frame=512] [rounds=200]
set -euo pipefail
cd "$(dirname "$0")/.."
# Same crate versions as the project: start from its lock file.
[ -f bench/ingest_micro/Cargo.lock ] || cp Cargo.lock bench/ingest_micro/Cargo.lock
CARGO_TARGET_DIR=_build/bench/ingest_micro \
  cargo run --quiet --release --manifest-path bench/ingest_micro/Cargo.toml -- "$@"
