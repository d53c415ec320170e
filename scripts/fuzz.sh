#!/usr/bin/env bash
# Fuzzes the telemetry ingest core: everything a Python worker can send
# (stderr lines, gRPC frames) goes through these targets.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]  fuzz each target SECONDS (default 60)
#   scripts/fuzz.sh build                   only build the targets
#   scripts/fuzz.sh seeds                   regenerate the committed seed corpora
#
# Targets (native/snakepit_telemetry_core/fuzz/fuzz_targets/):
#   stderr_line  bytes -> stderr::parse_line
#   frame_event  bytes -> scan::EventScratch::validate (the NIF's decoder),
#                checked against TelemetryEvent::decode + frame::validate_frame_event
#   frame_batch  bytes -> scan::split_batch, checked against
#                TelemetryEventBatch::decode; then every event as frame_event
# Each checks that nothing panics, that every accepted event is within the
# catalog limits, that the NIF's decoder decides as prost + validation do, and
# (frames) that the stderr path decides the same event the same way. See
# native/snakepit_telemetry_core/fuzz/src/lib.rs.
#
# Prints executions and time per target. Exit status: 0 when no target found
# anything, 1 when one crashed, hung or ran out of memory (the input is in
# fuzz/artifacts/<target>/; replay it with the command printed), 2 for a usage
# or build error. `scripts/fuzz.sh all 10` is the brief run for the test
# command: the first build takes a few minutes, later runs start in ~1 s.
#
# The committed seeds (fuzz/corpus/<target>/) are only read; what libFuzzer
# discovers goes to fuzz/target/corpus/<target>/ (kept between runs, ignored
# by git, gone with `cargo clean` there).
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz builds with nightly-only compiler flags
# (-Zsanitizer=address, and SanitizerCoverage options behind -C llvm-args /
# -Z), but the project's only toolchain is stable 1.95 and there is no nightly.
# RUSTC_BOOTSTRAP=1 makes the stable compiler accept -Z flags. It is set only
# inside this script, for the fuzz crate, which has its own workspace, lock
# file and target dir; the product build never sees it.
#
# Environment: FUZZ_SANITIZER (address|none, default address),
# FUZZ_MAX_LEN (bytes per input, default 8192), FUZZ_VERBOSE=1 (print
# libFuzzer's whole output).
set -uo pipefail
cd "$(dirname "$0")/.."

fuzz_dir=native/snakepit_telemetry_core/fuzz
targets=(stderr_line frame_event frame_batch)
sanitizer=${FUZZ_SANITIZER:-address}
max_len=${FUZZ_MAX_LEN:-8192}

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# elapsed START : seconds since START (a `date +%s.%N`).
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

what=${1:-all}
secs=${2:-60}
case "$what" in
  -h | --help) usage ;;
  all) selected=("${targets[@]}") ;;
  build | seeds) selected=() ;;
  *)
    [[ " ${targets[*]} " == *" $what "* ]] || {
      echo "fuzz.sh: unknown target '$what' (${targets[*]}, all, build, seeds)" >&2
      exit 2
    }
    selected=("$what")
    ;;
esac
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || {
  echo "fuzz.sh: SECONDS must be a positive integer, got '$secs'" >&2
  exit 2
}

if [ "$what" = seeds ]; then
  # A plain (uninstrumented) build: no RUSTC_BOOTSTRAP needed.
  exec cargo run --quiet --manifest-path "$fuzz_dir/Cargo.toml" --example gen_seeds
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (once, ~1 min)" >&2
  cargo install cargo-fuzz --locked || exit 2
fi

# The fuzz crate has its own Cargo.lock: warn when a dependency it shares
# with the product (serde_json, prost, ...) is at another version, since the
# fuzzer should exercise what ships.
lock_versions() { awk '/^name = /{ n = $3 } /^version = /{ print n, $3 }' "$1" | tr -d '"'; }
drift=$(awk 'NR == FNR { root[$1] = root[$1] " " $2; next }
  ($1 in root) && index(root[$1] " ", " " $2 " ") == 0 { print "  " $1 " " $2 " (root:" root[$1] ")" }' \
  <(lock_versions Cargo.lock) <(lock_versions "$fuzz_dir/Cargo.lock"))
if [ -n "$drift" ]; then
  echo "fuzz.sh: warning: $fuzz_dir/Cargo.lock differs from Cargo.lock:" >&2
  echo "$drift" >&2
  echo "  align with: cargo update --manifest-path $fuzz_dir/Cargo.toml -p NAME --precise VERSION" >&2
fi

export RUSTC_BOOTSTRAP=1
triple=$(rustc -vV | sed -n 's/^host: //p')
build_start=$(date +%s.%N)
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" --target "$triple" || {
  echo "fuzz.sh: build failed" >&2
  exit 2
}
build_secs=$(elapsed "$build_start")
printf 'fuzz.sh: targets built in %.1f s (sanitizer: %s)\n' "$build_secs" "$sanitizer"
[ "$what" = build ] && exit 0

bin_dir=$fuzz_dir/target/$triple/release
mkdir -p "$fuzz_dir/target/logs"
failed=()
summary=()
for t in "${selected[@]}"; do
  work=$fuzz_dir/target/corpus/$t
  artifacts=$fuzz_dir/artifacts/$t
  log=$fuzz_dir/target/logs/$t.log
  mkdir -p "$work" "$artifacts"
  echo "==> $t: ${secs} s"
  start=$(date +%s.%N)
  # First corpus dir: written to; the committed seeds after it: read only.
  "$bin_dir/$t" "$work" "$fuzz_dir/corpus/$t" \
    -dict="$fuzz_dir/dict/$t.dict" \
    -max_total_time="$secs" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  wall=$(elapsed "$start")
  [ "${FUZZ_VERBOSE:-0}" = 1 ] && cat "$log"
  # libFuzzer's own totals: `stat::number_of_executed_units: N` (from
  # -print_final_stats) or `Done N runs in S second(s)`.
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
  done_line=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(echo "$done_line" | awk '{ print $2 }')
  fuzz_secs=$(echo "$done_line" | awk '{ print $5 }')
  [ -n "$fuzz_secs" ] || fuzz_secs=$(printf '%.0f' "$wall")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
  line=$(printf '%-12s %12s execs in %4s s (%s/s), wall %.1f s, %s' "$t" "${execs:-?}" \
    "$fuzz_secs" "$(( ${execs:-0} / (fuzz_secs > 0 ? fuzz_secs : 1) ))" "$wall" "${cov:-no stats}")
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    line="$line  FAILED (exit $rc)"
    # The panic or sanitizer report, and where libFuzzer saved the input.
    grep -E -A12 "panicked at|==ERROR|ERROR: libFuzzer|SUMMARY" "$log" | head -40
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | awk '{ print $5 }')
    if [ -n "$artifact" ]; then
      echo "input: $artifact"
      echo "replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir $fuzz_dir $t $artifact"
    fi
    echo "full log: $log"
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "==> fuzz summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "no crash in ${#selected[@]} target(s)"
