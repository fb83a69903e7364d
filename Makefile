# The targets CI runs. `make test` is the README's test command.
CARGO ?= cargo
# The Python the integration tests run their Python clients with (made by `make deps`).
export ARMORLAKE_PYTHON ?= $(CURDIR)/.venv/bin/python

.PHONY: all deps fmt fmt-check clippy test up load

all: fmt-check clippy test

deps:
	bash .ci/deps.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Installs the test clients, checks formatting and lints, then runs every test.
test: deps fmt-check clippy
	$(CARGO) test --workspace

up:
	$(CARGO) run --release -- up

# The load suite (not in CI): 100 sessions of mixed queries against a release `up`.
DURATION ?= 5m
load:
	$(CARGO) build --release -p armorlake
	$(CARGO) run --release -p armorlake-benches --bin load -- --connections 100 --duration $(DURATION)
