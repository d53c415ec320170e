#!/usr/bin/env bash
# Profiles the BEAM process (with the NIF's ingest threads) while the load
# generator streams at full speed (case (a) of bench/run.exs), with perf and
# DWARF call graphs (+JPperf true names the JIT-compiled Erlang code), and
# prints where the time goes: per thread group, per ingest stage (inclusive,
# with CPU µs per event), the normal schedulers' hottest symbols and what the
# dirty-CPU schedulers do.
#
#   bench/profile.sh [streams=16] [rpc=batched|stock] [seconds=5]
#
# Needs perf (apt-get install linux-perf) and perf_event_paranoid <= 2.
# Output and perf.data go to _build/bench/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."

streams=${1:-16}
rpc=${2:-batched}
secs=${3:-5}
out=_build/bench/profile
mkdir -p "$out"

command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)"; exit 1; }
cargo build --release -p snakepit_loadgen --quiet
# Line tables for perf's call graphs (the release profile has no debug info);
# the next plain `mix compile` builds the release NIF again.
export SNAKEPIT_TELEMETRY_PROFILE=profiling
mix compile >/dev/null

ERL_FLAGS="${ERL_FLAGS:-} +JPperf true" \
  mix run bench/profile_load.exs --streams "$streams" --rpc "$rpc" --seconds "$((secs + 1))" \
  >"$out/load.log" 2>&1 &
load=$!

for _ in $(seq 1 300); do
  grep -q '^PROFILE_READY' "$out/load.log" 2>/dev/null && break
  sleep 0.1
done
pid=$(awk '/^PROFILE_READY/ {print $2}' "$out/load.log")
[ -n "$pid" ] || { cat "$out/load.log"; exit 1; }

perf record -q -F 999 --call-graph dwarf,32768 -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>/dev/null
wait "$load"
# The summary cuts perf's output short with head: SIGPIPE is expected there.
set +o pipefail

result=$(grep '^PROFILE_RESULT' "$out/load.log" | cut -d' ' -f2-)
val() { tr ' ' '\n' <<<"$result" | awk -F= -v k="$1" '$1 == k {print $2}'; }
ingest_us=$(val ingest_us_per_event)

report() { perf report -i "$out/perf.data" --stdio --no-header "$@" 2>/dev/null | grep '%'; }

# First inclusive line whose symbol equals $1 exactly (non-inlined copy).
incl() {
  awk -v s="$1" '{ sub(/^ +/, ""); pct = $1; $1 = ""; $2 = ""; $3 = "";
                   sym = substr($0, 4) }
                 sym == s { print pct; exit }' "$out/ingest_children.txt"
}

{
  echo "== Profile: loadgen -> NIF -> handler, $rpc RPC, $streams streams, ${secs} s, perf -F 999 --call-graph dwarf"
  grep '^PROFILE_COMMAND' "$out/load.log" | cut -d' ' -f2- | sed 's/^/   $ /'
  echo "   $result"
  echo
  echo "-- Samples per thread group (self time, % of all samples of the BEAM process)"
  report --no-children --sort comm -g none |
    awk '{ p = $1; sub(/%/, "", p); c = $2;
           if (c ~ /^snakepit-ingest/) g = "NIF ingest (tokio, snakepit-ingest)";
           else if (c ~ /_scheduler$/ || c ~ /_schedule$/) g = "BEAM normal schedulers";
           else if (c ~ /dirty_cpu/) g = "BEAM dirty-CPU schedulers";
           else g = "other BEAM threads";
           sum[g] += p }
         END { for (g in sum) printf "   %6.2f%%  %s\n", sum[g], g }' | sort -rn

  report --comm snakepit-ingest --percentage relative --children --sort sym -g none \
    >"$out/ingest_children.txt"
  report --comm snakepit-ingest --percentage relative --no-children --sort dso,sym -g none \
    >"$out/ingest_self.txt"

  echo
  echo "-- NIF ingest threads by stage (inclusive % of their samples; µs/event = share × ${ingest_us} µs)"
  stage() {
    local pct
    pct=$(incl "$2")
    [ -n "$pct" ] || pct="0%"
    awk -v p="${pct%\%}" -v us="$ingest_us" -v name="$1" \
      'BEGIN { printf "   %6.2f%%  %6.3f µs/ev  %s\n", p, p / 100 * us, name }'
  }
  stage "gRPC read (tonic: HTTP/2 data to raw frames)" \
    'tonic::codec::decode::StreamingInner::poll_frame'
  stage "ingest a frame (Task::take: split, decode, validate, encode)" \
    'snakepit_telemetry_nif::ingest::Task::take'
  stage "  decode + validate (scan::EventScratch::validate)" \
    'snakepit_telemetry_core::scan::EventScratch::validate'
  stage "    rules (validate::validate: catalog lookups, ValidEvent)" \
    'snakepit_telemetry_core::validate::validate'
  stage "  term building (Dispatcher::push: encode into the batch env)" \
    'snakepit_telemetry_nif::dispatch::Dispatcher::push'
  stage "    enif_make_map_from_arrays (sort + validate keys)" \
    'enif_make_map_from_arrays'
  stage "send_batch (OwnedEnv::send_and_clear: enif_send copies the batch)" \
    'snakepit_telemetry_nif::dispatch::Dispatcher::send_batch'
  stage "HTTP/2 connection task (h2/hyper)" \
    '<hyper::proto::h2::client::H2ClientFuture<B,T,E> as core::future::future::Future>::poll'
  awk '$2 ~ /libc/ && $4 ~ /malloc|free|consolidate|unlink_chunk|realloc/ { s += $1 }
       END { printf "   %6.2f%%  %6.3f µs/ev  malloc/free (self time, all callers)\n", s, s / 100 * us }' \
    us="$ingest_us" "$out/ingest_self.txt"
  awk '$2 ~ /kernel/ { s += $1 }
       END { printf "   %6.2f%%  %6.3f µs/ev  kernel (self: recv, page faults, wakeups)\n", s, s / 100 * us }' \
    us="$ingest_us" "$out/ingest_self.txt"

  echo
  echo "-- NIF ingest threads: hottest symbols (self %)"
  head -12 "$out/ingest_self.txt" | sed 's/^/  /'

  echo
  echo "-- BEAM normal schedulers: hottest symbols (self %, JIT code named \$Module:fun/arity)"
  report --comm 1_scheduler,2_scheduler --percentage relative --no-children --sort sym -g none |
    head -15 | sed 's/^/  /'

  echo
  echo "-- BEAM dirty-CPU schedulers (inclusive % of their samples)"
  report --comm 1_dirty_cpu_sch,2_dirty_cpu_sch --percentage relative --children --sort sym -g none |
    grep -E 'erts_garbage_collect_nobump|erts_proc_sig_move_msgs_to_heap|erts_move_multi_frags|erts_execute_dirty_system_task' |
    head -6 | sed 's/^/  /'
  echo
  echo "perf data: $out/perf.data (perf report -i $out/perf.data --comm snakepit-ingest)"
} | tee "$out/summary.txt"
