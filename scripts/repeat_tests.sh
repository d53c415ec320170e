#!/usr/bin/env bash
# Runs the ExUnit suite N times in a row (default 10) while another process
# keeps one core busy, to find flaky tests (a flaky test is a bug: find its
# cause). Prints one line per run and the logs of red runs' failures.
#   scripts/repeat_tests.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
export MIX_ENV=test
mix compile >/dev/null || exit 1
logs=_build/repeat
mkdir -p "$logs"
timeout 14400 sh -c 'while :; do :; done' &
busy=$!
trap 'kill $busy 2>/dev/null' EXIT
green=0
red=0
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  if mix test >"$logs/run_$i.log" 2>&1; then
    green=$((green + 1)) && verdict=green
  else
    red=$((red + 1)) && verdict=RED
  fi
  summary=$(grep -E '[0-9]+ tests?, [0-9]+ failures?' "$logs/run_$i.log" | tail -1)
  echo "run $i: $verdict ($summary; $(($(date +%s) - start)) s; $(grep -oE "seed [0-9]+" "$logs/run_$i.log" | tail -1))"
  [ "$verdict" = RED ] && grep -E '^\s+[0-9]+\) test' "$logs/run_$i.log"
done
echo "repeat_tests: $green green, $red red of $n runs under a busy core (logs: $logs)"
[ "$red" -eq 0 ]
