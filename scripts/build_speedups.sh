#!/usr/bin/env bash
# Builds the Python worker's optional native encoder (the Rust crate
# native/snakepit_bridge_speedups) and installs it where the worker imports
# it: priv/python/snakepit_bridge/telemetry/_speedups.abi3.so. Without it the
# worker encodes telemetry in pure Python (the same bytes, slower).
#   scripts/build_speedups.sh [cargo profile, default release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${1:-release}
# abi3: one library for every CPython >= 3.10; any interpreter can build it.
export PYO3_PYTHON=${PYO3_PYTHON:-$(command -v python3)}
cargo build --locked --quiet --profile "$profile" -p snakepit_bridge_speedups

# Where cargo writes it, as the Mix compiler looks: CARGO_TARGET_DIR (else
# target/), under <triple>/ with CARGO_BUILD_TARGET.
dir=${CARGO_TARGET_DIR:-target}${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
dir=$dir/$([ "$profile" = dev ] && echo debug || echo "$profile")
lib=
for candidate in "$dir"/lib_speedups.so "$dir"/lib_speedups.dylib; do
  [ -f "$candidate" ] && lib=$candidate && break
done
[ -n "$lib" ] || { echo "error: cargo built no lib_speedups under $dir" >&2; exit 1; }
dest=priv/python/snakepit_bridge/telemetry/_speedups.abi3.so
# A new file renamed over the old one: a running worker keeps its mapping.
cp "$lib" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
