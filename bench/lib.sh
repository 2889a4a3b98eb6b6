#!/usr/bin/env bash
# bench/lib.sh -- what the end-to-end benchmark scripts share; sourced, not run.
#
# Expects the caller to be in the repository root with `set -euo pipefail`. Sets BIN (the Release
# binary; THERMOCLINE_BIN to override), BENCH_CONSUME (bench_consume; TC_BENCH_CONSUME) and PY (the
# venv's Python, which has psycopg and confluent-kafka; TC_BENCH_PYTHON), and exports the dev
# services' environment.
# shellcheck disable=SC2034  # the variables set here are used by the scripts that source it

BIN=${THERMOCLINE_BIN:-build/thermocline}
BENCH_CONSUME=${TC_BENCH_CONSUME:-build/bench/bench_consume}
PY=${TC_BENCH_PYTHON:-.venv/bin/python}
eval "$(scripts/dev-services env)"

# Build the Release binary and bench_consume (the benches measure the Release build only).
# TC_BENCH_BUILD=0 uses the binaries as they are.
bench_build() {
  local log
  [ "${TC_BENCH_BUILD:-1}" = 0 ] && return 0
  log=$(mktemp)
  if ! { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTC_TESTS=OFF &&
         ninja -C build thermocline bench_consume; } >"$log" 2>&1; then
    tail -30 "$log" >&2
    rm -f "$log"
    echo "bench: the Release build failed" >&2
    return 1
  fi
  rm -f "$log"
}

# A TCP port nobody listens on right now.
bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until url answers 200 (at most $2 seconds, default 60).
bench_wait_http() {
  local url=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 10; i++)); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench: $url did not answer within $limit s" >&2
  return 1
}

# Start `thermocline registry` with its tables in PostgreSQL schema $1, its log in file $2; sets
# REG_PID and REG_URL.
bench_start_registry() {
  local port
  port=$(bench_free_port)
  "$BIN" registry --listen "127.0.0.1:$port" --schema "$1" 2>"$2" &
  REG_PID=$!
  REG_URL="http://127.0.0.1:$port"
  bench_wait_http "$REG_URL/subjects" 30
}

# Drop what a run created: topics (and their dead-letter mirrors) and PostgreSQL schemas.
# Usage: bench_drop TOPIC... -- SCHEMA...
bench_drop() {
  local t
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    for t in "$1" "$1-dlq"; do
      scripts/dev-services topics --delete --if-exists --topic "$t" >/dev/null 2>&1 || true
    done
    shift
  done
  [ $# -gt 0 ] && shift
  for t in "$@"; do
    psql -qAtc "DROP SCHEMA IF EXISTS \"$t\" CASCADE" >/dev/null 2>&1 || true
  done
}

# Sum over partitions of the store's next offsets for topic $2 in schema $1.
bench_stored_offsets() {
  psql -qAtc "SELECT coalesce(sum(next_offset), 0) FROM \"$1\".ingest_offsets WHERE topic = '$2'"
}
