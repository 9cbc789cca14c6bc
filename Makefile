# paymesh: the front door. `make run` starts a local pod, `make test` runs
# every check CI runs. Both install what they need when run as root on Debian.

CARGO       ?= cargo
JOBS        ?= 2
CARGO_FLAGS ?= -j$(JOBS)
VENV        := target/chart-venv

.PHONY: all deps build release run test test-rust otel-venv test-charts test-fuzz lint fmt clippy bench soak fuzz clean-run bench-fleet

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
## (real processes, real etcd), the Helm chart's, and a short run of every
## fuzz target (FUZZ_SECONDS each, default 5) so that none can rot.
test: lint test-rust test-charts test-fuzz

## otel-venv: the OTLP receiver the system tests export traces to
## (tests/otlp/sink.py, oteltest) in target/otel-venv; a no-op when current.
otel-venv: deps
	@scripts/otel-venv.sh

test-rust: build otel-venv
	$(CARGO) test $(CARGO_FLAGS) --workspace

test-charts: build
	@if [ -x charts/tests/run.sh ]; then charts/tests/run.sh; else echo "charts/tests/run.sh missing"; exit 1; fi

test-fuzz: deps
	FUZZ_SECONDS=$${FUZZ_SECONDS:-5} JOBS=$(JOBS) fuzz/run.sh

## fuzz: every fuzz target under honggfuzz for FUZZ_SECONDS (default 60)
## each; FUZZ_TARGETS="a b" picks some. Installs cargo hfuzz when missing.
fuzz: deps
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} JOBS=$(JOBS) fuzz/run.sh

clean-run:
	rm -rf target/run

## bench: the sidecar against haproxy, Envoy and no proxy, pinned and
## unpinned, plus idle connections and scale; report and chart in
## target/bench/ (installs Envoy, haproxy, wrk and oha when missing).
## BENCH_SMOKE=1 for a tiny load; see bench/README.md for the other knobs.
bench: deps
	JOBS=$(JOBS) python3 bench/harness/bench.py
	@if [ "$${SOAK_DURATION:-300}" != 0 ]; then $(MAKE) --no-print-directory soak; fi

## bench-fleet: fleet quotas against a real etcd: accuracy and convergence
## after a traffic shift, a leave and a join for 2, 4 and 8 sidecars
## (tests/examples/fleet_quota.rs), then the throttle's per-request cost
## with scope fleet vs local (criterion, bench/benches/fleet_throttle.rs).
bench-fleet: build
	$(CARGO) run $(CARGO_FLAGS) -p paymesh-system-tests --example fleet_quota
	$(CARGO) bench $(CARGO_FLAGS) -p paymesh-bench --bench fleet_throttle

## soak: the whole pod (orchestrator, app, telemetryd, sidecar with a rotating
## file access log) under sustained mixed traffic; prints RSS and open fds of
## every process and the data-dir and log sizes, and whether each stayed
## within +-10 % after the warm-up. SOAK_DURATION seconds (default 300; 0
## skips it in `make bench`), SOAK_WARMUP, SOAK_REPORT, SOAK_CLIENTS.
soak: deps
	$(CARGO) build $(CARGO_FLAGS) --release -p paymesh-sidecar -p paymesh-app -p paymesh-orchestrator -p paymesh-telemetryd
	python3 bench/harness/soak.py
