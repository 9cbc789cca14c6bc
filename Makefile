# paymesh: the front door. `make run` starts a local pod, `make test` runs
# every check CI runs. Both install what they need when run as root on Debian.

CARGO       ?= cargo
JOBS        ?= 2
CARGO_FLAGS ?= -j$(JOBS)
VENV        := target/chart-venv

.PHONY: all deps build release run test test-rust test-charts lint fmt clippy bench clean-run

all: build

## deps: system packages the build and the tests need (protoc for etcd-client,
## etcd for the migration tests), installed with apt-get when missing.
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins

release: deps
	$(CARGO) build $(CARGO_FLAGS) --release --workspace --bins

## run: build and start the local pod in the foreground; Ctrl-C stops it.
run: build
	@scripts/run-local.sh target/debug

fmt:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

lint: fmt clippy

## test: formatting, clippy, then every test: unit, component, system
## (real processes, real etcd) and the Helm chart's.
test: lint test-rust test-charts

test-rust: build
	$(CARGO) test $(CARGO_FLAGS) --workspace

test-charts: build
	@if [ -x charts/tests/run.sh ]; then charts/tests/run.sh; else echo "charts/tests/run.sh missing"; exit 1; fi

clean-run:
	rm -rf target/run

## bench: the sidecar against Envoy and against no proxy, one run, report
## and chart in target/bench/ (installs Envoy, wrk and oha when missing).
## BENCH_SMOKE=1 for a tiny load; see bench/README.md for the other knobs.
bench: deps
	JOBS=$(JOBS) python3 bench/harness/bench.py
