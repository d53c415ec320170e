#!/usr/bin/env bash
# Runs every linter and every test suite of the three languages, prints each
# runner's own summary, and fails if any check fails or any suite runs no test.
#   scripts/test.sh              lint + all suites
#   scripts/test.sh --lint-only  formatters and linters only
set -uo pipefail
cd "$(dirname "$0")/.."

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
passed_total=0
failed_total=0

section() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# run NAME CMD... : runs a check, records a failure by name.
run() {
  local name=$1
  shift
  section "$name: $*"
  "$@" 2>&1 | tee "$logs/$name.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("$name")
}

# count NAME PASSED FAILED : adds a suite's counts; a suite with no test fails.
count() {
  local name=$1 p=${2:-0} f=${3:-0}
  passed_total=$((passed_total + p))
  failed_total=$((failed_total + f))
  if [ "$((p + f))" -eq 0 ]; then
    echo "error: $name ran no test" >&2
    [[ " ${failed[*]} " == *" $name "* ]] || failed+=("$name")
  fi
}

# sum REGEX FILE : adds up the leading numbers of every match.
sum() { grep -oE "$1" "$2" | awk '{ n += $1 } END { print n + 0 }'; }

# count_mix NAME : ExUnit prints "N doctests, M tests, K failures".
count_mix() {
  local log="$logs/$1.log" total failures
  total=$(($(sum '[0-9]+ doctests?' "$log") + $(sum '[0-9]+ tests?,' "$log")))
  failures=$(sum '[0-9]+ failures?' "$log")
  count "$1" "$((total - failures))" "$failures"
}

export MIX_ENV=test
venv=.venv/bin

# --- formatters and linters -------------------------------------------------
run cargo-fmt cargo fmt --all -- --check
run clippy cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
run mix-format mix format --check-formatted
run mix-format-fallback bash -c 'cd fallback/telemetry && mix format --check-formatted'
run mix-compile mix compile --warnings-as-errors --force
run ruff-check "$venv/ruff" check priv/python test/support bench
run ruff-format "$venv/ruff" format --check priv/python test/support bench

if [ "${1:-}" != "--lint-only" ]; then
  # --- test suites ------------------------------------------------------------
  run cargo-test cargo test --workspace --locked
  count cargo-test "$(sum '[0-9]+ passed;' "$logs/cargo-test.log")" \
    "$(sum '[0-9]+ failed;' "$logs/cargo-test.log")"

  # The ExUnit suite drives the load generator binary.
  run loadgen-build cargo build --release --locked --quiet -p snakepit_loadgen
  run mix-test mix test
  count_mix mix-test

  # A short soak (bench/soak.exs, like `make soak`): real workers under load
  # with kills, restarts, control changes and hostile peers; fails if an
  # event is unaccounted or atoms grew. In dev: the soak loads the tests'
  # hostile-peer launcher itself.
  run soak env MIX_ENV=dev mix run bench/soak.exs --duration-s 20 --hostile

  run telemetry-fallback-test bash -c 'cd fallback/telemetry && mix test'
  count_mix telemetry-fallback-test

  # Fuzzing, briefly (longer runs: scripts/fuzz.sh all 300).
  run fuzz scripts/fuzz.sh all 10

  # With the native encoder, which setup built: its tests fail, not skip, without it.
  run pytest bash -c "cd priv/python && SNAKEPIT_REQUIRE_SPEEDUPS=1 ../../$venv/python -m pytest -q"
  count pytest "$(sum '[0-9]+ passed' "$logs/pytest.log")" "$(sum '[0-9]+ failed' "$logs/pytest.log")"

  # The same suite against the lowest versions requirements.txt allows.
  run pytest-lowest scripts/test_python_lowest.sh
  count pytest-lowest "$(sum '[0-9]+ passed' "$logs/pytest-lowest.log")" \
    "$(sum '[0-9]+ failed' "$logs/pytest-lowest.log")"
fi

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  echo "total: $passed_total passed, $failed_total failed"
  exit 1
fi
echo "all checks green"
[ "${1:-}" = "--lint-only" ] || echo "total: $passed_total passed, $failed_total failed"
