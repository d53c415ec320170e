# Task runner. The README's quick start uses `make demo` and `make test`;
# both install what is missing first (scripts/setup.sh).
.PHONY: setup demo demo-stderr demo-cluster test lint fmt clean bench soak

setup:
	@scripts/setup.sh

demo: setup
	mix run examples/telemetry_demo.exs

demo-stderr: setup
	mix run examples/stderr_demo.exs

# Three BEAM nodes on this machine: this one controls the others' workers.
demo-cluster: setup
	mix run examples/cluster_demo.exs

test: setup
	@scripts/test.sh

lint: setup
	@scripts/test.sh --lint-only

# Benchmarks (about 6 min): a table of figures against the targets, the command
# line of each, and _build/bench/report.json. BENCH_ARGS passes options to
# bench/run.exs (e.g. --quick, --only a,b). Profiles: bench/profile.sh,
# bench/ingest_micro.sh.
bench: setup
	@start=$$(date +%s) && \
	cargo build --release -p snakepit_loadgen && \
	mix compile && \
	mix run bench/run.exs $(BENCH_ARGS) && \
	echo "make bench: $$(( $$(date +%s) - start )) s in all, builds included"

# Soak (60 s by default): 4 Python workers under mixed load with random
# kills, restarts and control changes; prints where every event went and
# fails if any is unaccounted. SOAK_ARGS passes options to bench/soak.exs
# (--workers N, --duration-s S, --seed N, --hostile: hostile peers and stray
# messages beside the workers).
soak: setup
	mix compile && mix run bench/soak.exs $(SOAK_ARGS)

fmt:
	cargo fmt --all
	mix format
	cd fallback/telemetry && mix format
	.venv/bin/ruff format priv/python test/support && .venv/bin/ruff check --fix priv/python test/support

clean:
	cargo clean
	rm -rf _build deps priv/native fallback/telemetry/_build .venv
