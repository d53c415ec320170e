# Task runner. The README's quick start uses `make demo` and `make test`;
# both install what is missing first (scripts/setup.sh).
.PHONY: setup demo demo-stderr test lint fmt clean

setup:
	@scripts/setup.sh

demo: setup
	mix run examples/telemetry_demo.exs

demo-stderr: setup
	mix run examples/stderr_demo.exs

test: setup
	@scripts/test.sh

lint: setup
	@scripts/test.sh --lint-only

fmt:
	cargo fmt --all
	mix format
	cd fallback/telemetry && mix format
	.venv/bin/ruff format priv/python && .venv/bin/ruff check --fix priv/python

clean:
	cargo clean
	rm -rf _build deps priv/native fallback/telemetry/_build .venv
