# Thermocline -- the two commands a newcomer needs:
#   make demo   install what is missing, build, start Kafka + PostgreSQL, run a live demo
#   make test   the whole suite: lint, unit tests under ASan+UBSan, integration tests against
#               real Kafka and PostgreSQL, fuzz smoke
# Everything else here is a step of those two.

SHELL        := /bin/bash
BUILD        := build
BUILD_ASAN   := build-asan
BUILD_FUZZ   := build-fuzz
BUILD_TSAN   := build-tsan
VENV         := .venv
PY           := $(VENV)/bin/python
DEV          := scripts/dev-services
SOURCES      := $(shell git ls-files '*.c' '*.h' 2>/dev/null)
# The smoke in `make test`: each target replays its committed corpus, then mutates for this long
# (15 targets: 2.5 min). `make test-full` gives each ten minutes.
FUZZ_SECONDS ?= 10

.PHONY: all build build-asan build-fuzz build-tsan test-tsan deb deps venv graphql kubernetes monitoring-config services services-down test test-full unit integration faults test-faults \
        fuzz-smoke lint format demo bench bench-e2e bench-matrix bench-latency bench-burst bench-quality bench-api bench-export clean docs

all: build

deps:
	@scripts/install-deps

# tests/requirements.txt names the packages; tests/requirements-lock.txt pins every one of them and
# their dependencies to an exact version, so a release upstream cannot change a run.
$(VENV)/.ok: tests/requirements.txt tests/requirements-lock.txt
	@python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt \
	    -c tests/requirements-lock.txt
	@touch $@

venv: $(VENV)/.ok

# The GraphQL server's Node packages (PostGraphile 4), exactly as deploy/graphql/package-lock.json
# pins them.
deploy/graphql/node_modules/.ok: deploy/graphql/package.json deploy/graphql/package-lock.json
	@cd deploy/graphql && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

graphql: deploy/graphql/node_modules/.ok

build:
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTC_TESTS=OFF >/dev/null
	@ninja -C $(BUILD) thermocline

build-asan:
	@cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTC_SANITIZE=ON -DTC_TESTS=ON >/dev/null
	@ninja -C $(BUILD_ASAN)

# ThreadSanitizer (it cannot be combined with ASan): the pipeline's writer threads, the rollups'
# writer, the fetch thread, and librdkafka's and libmicrohttpd's threads.
# tests/tsan/c11_threads.c (uninstrumented, preloaded into the processes under test) gives
# librdkafka's C11 threads and locks to the runtime as pthreads: see the file.
build-tsan:
	@cmake -S . -B $(BUILD_TSAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTC_TSAN=ON -DTC_TESTS=ON >/dev/null
	@ninja -C $(BUILD_TSAN)
	@$(CC) -std=c11 -D_DEFAULT_SOURCE -fPIC -shared -O1 -Wall -Wextra -Werror \
	    -o $(BUILD_TSAN)/libtc_c11_threads.so tests/tsan/c11_threads.c -lpthread

# The unit tests and a bounded set of integration tests (parallel writers, health endpoints,
# SIGHUP, the lake sink, the quality sink's and the online features' writer threads) under
# ThreadSanitizer: any report fails the run (halt_on_error, and the integration tests look for
# ThreadSanitizer in every process's stderr). tests/tsan/suppressions names what is suppressed and why.
TSAN_OPTIONS_RUN := halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan/suppressions
TSAN_INTEGRATION := tests/integration/test_writers.py tests/integration/test_observe.py \
                    tests/integration/test_reload.py \
                    tests/integration/test_lake.py::test_lake_catches_up_when_behind_the_store \
                    tests/integration/test_quality_sink.py::test_a_quality_flush_stalled_by_a_lock_does_not_stall_the_pipeline \
                    tests/integration/test_features_online.py::test_online_features_equal_pandas_over_the_store
test-tsan: build-tsan venv services
	@cd $(BUILD_TSAN) && TSAN_OPTIONS="$(TSAN_OPTIONS_RUN)" ctest --output-on-failure
	@eval "$$($(DEV) env)" && THERMOCLINE_BIN=$(CURDIR)/$(BUILD_TSAN)/thermocline \
	    THERMOCLINE_PRELOAD=$(CURDIR)/$(BUILD_TSAN)/libtc_c11_threads.so \
	    TSAN_OPTIONS="$(TSAN_OPTIONS_RUN)" $(PY) -m pytest -q -W error $(TSAN_INTEGRATION)

build-fuzz:
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTC_SANITIZE=ON \
	    -DTC_FUZZ=ON -DTC_TESTS=OFF >/dev/null
	@ninja -C $(BUILD_FUZZ)

# The Debian package (CPack, deploy/CMakeLists.txt) of the Release build: build/thermocline_<v>_<arch>.deb.
deb: build
	@cd $(BUILD) && cpack -G DEB >/dev/null && ls $(CURDIR)/$(BUILD)/thermocline_*.deb

services:
	@$(DEV) up
	@$(DEV) --secure up

services-down:
	@$(DEV) down
	@$(DEV) --secure down

# Unit tests (cmocka) under AddressSanitizer + UndefinedBehaviorSanitizer.
unit: build-asan
	@cd $(BUILD_ASAN) && ctest --output-on-failure

# Integration tests against the real services, with the sanitized binary (and the Debian package
# installed and run by tests/integration/test_package.py); then our Parquet files
# read by independent readers (pyarrow, DuckDB, parquet-java). Two runs: each folder has its own
# conftest.
integration: build-asan venv graphql services deb
	@eval "$$($(DEV) env)" && eval "$$($(DEV) --secure env)" && \
	    THERMOCLINE_BIN=$(CURDIR)/$(BUILD_ASAN)/thermocline \
	    THERMOCLINE_DEB=$$(ls $(CURDIR)/$(BUILD)/thermocline_*.deb | tail -n 1) \
	    $(PY) -m pytest -q -W error --durations=15 tests/integration
	@TC_BUILD_DIR=$(BUILD_ASAN) $(PY) -m pytest -q -W error tests/interop

# Every libFuzzer target runs for FUZZ_SECONDS on its committed corpus.
fuzz-smoke: build-fuzz
	@set -e; for f in $(BUILD_FUZZ)/tests/fuzz/fuzz_*; do \
	    name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
	    mkdir -p $$corpus; work=$$(mktemp -d); \
	    echo "fuzz smoke: $$name for $(FUZZ_SECONDS) s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$work $$corpus 2>$$work.log \
	        || { tail -50 $$work.log; exit 1; }; \
	    rm -rf $$work $$work.log; done

# The Kubernetes manifests (deploy/kubernetes/) through kubeconform -strict, against pinned schemas
# (see scripts/check-kubernetes), and the invalid ones of tests/kubernetes/invalid/ refused.
kubernetes: venv
	@scripts/check-kubernetes

# Fault injection (tests/faults): kill -9 loops, PostgreSQL and broker restarts, a full and read-only
# lake disk, group members killed at random, brokers of a three-broker cluster lost, the store's
# cluster destroyed and restored with pgBackRest (on scripts/backup's drill cluster, port 25532,
# /var/lib/thermocline-faults-drill). It runs its own Kafka and PostgreSQL (ports 29092 and 25432,
# state dir /var/lib/thermocline-faults) because it stops and restarts them, and the three-broker
# cluster of `dev-services --cluster` (31092-31094, held under /tmp/tc-cluster.lock). `faults` is the bounded
# form (60,000 readings, 10 kills); `test-faults` the full one (500,000 readings, 12 kills).
faults: build-asan venv
	@THERMOCLINE_BIN=$(CURDIR)/$(BUILD_ASAN)/thermocline TC_FAULTS=bounded \
	    $(PY) -m pytest -q -W error tests/faults

test-faults: build-asan venv
	@THERMOCLINE_BIN=$(CURDIR)/$(BUILD_ASAN)/thermocline TC_FAULTS=full \
	    $(PY) -m pytest -q -W error -s tests/faults

# The alerting rules (promtool check rules and the unit tests of deploy/prometheus/tests) and the
# example Alertmanager configuration (amtool check-config): a few seconds.
monitoring-config:
	@promtool check rules deploy/prometheus/thermocline-rules.yml >/dev/null
	@promtool test rules deploy/prometheus/tests/*.yml
	@amtool check-config deploy/alertmanager/alertmanager.yml >/dev/null

test: deps lint unit monitoring-config integration faults fuzz-smoke kubernetes
	@echo "make test: all suites passed"

# The long forms: 1,000 random Parquet cases per reader (200 for parquet-java), every fuzz
# target for 10 minutes, and the ThreadSanitizer run.
test-full: build-asan venv
	@TC_BUILD_DIR=$(BUILD_ASAN) TC_INTEROP_CASES=1000 TC_INTEROP_JAVA_CASES=200 \
	    $(PY) -m pytest -q -W error tests/interop
	@$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=600
	@$(MAKE) --no-print-directory test-tsan

lint:
	@scripts/lint

format:
	@clang-format -i $(SOURCES)

docs: build
	@$(BUILD)/thermocline config reference > docs/configuration.md
	@$(BUILD)/thermocline config sample > config/thermocline.sample.yaml

demo: deps build graphql services
	@scripts/demo

# Performance (not part of `make test`): end-to-end throughput against raw COPY and a bare consume
# (plain mode, JSON and Avro; TimescaleDB mode too, JSON, where the extension is installed), the
# same at every fleet shape (bench/run-matrix: 10,000 and 100,000 devices reporting every 10 s,
# 60 s and 300 s, both store modes), produce->visible latency at 20K/s and 50K/s, a 10x burst,
# and the quality detectors' detection quality against the simulator's truth (bench/run-quality). Each run appends a JSON line to
# bench/results.jsonl; `make bench` then appends their tables to docs/benchmarks.md.
bench: deps build venv services
	@start=$$(date -u +%FT%TZ) && bench/run-e2e && \
	    TC_BENCH_MODE=timescaledb TC_BENCH_FORMATS=json bench/run-e2e && \
	    TC_BENCH_BUILD=0 bench/run-matrix && \
	    bench/run-latency && bench/run-burst && bench/run-quality && bench/run-api && \
	    bench/run-export && \
	    bench/report markdown --since $$start --append

bench-e2e: deps build venv services
	@bench/run-e2e

# The end-to-end matrix alone (bench/run-matrix [COUNT]; TC_BENCH_RUNS=3 for three runs a cell).
bench-matrix: deps build venv services
	@bench/run-matrix

bench-latency: deps build venv services
	@bench/run-latency

bench-burst: deps build venv services
	@bench/run-burst

# The REST API's latency at 200 requests/s on a large store while the pipeline ingests.
bench-api: deps build venv services
	@bench/run-api

# rows/s and peak memory of `thermocline export` on 10M readings (Parquet and CSV).
bench-export: deps build
	@bench/run-export

# Detection quality of the quality monitor's detectors against the simulator's truth (offline).
bench-quality: deps build
	@bench/run-quality

clean:
	@rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
