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
unset THERMOCLINE_LAKE_DIR # the dev lake (the demo's); a benchmark says where its lake is
# TC_BENCH_SECURE=1: the secure dev services (scripts/dev-services --secure; docs/security.md):
# Kafka over TLS + SASL/PLAIN as the administrator (the ACLs are not what is measured, the TLS and
# SASL are), PostgreSQL over TLS (verify-full) + scram, for every client: the pipeline
# (TC_BENCH_SECURE_SET) as the ingest role thermocline_ingest with migrate (and the registry) as the
# owner thermocline, bench_consume (TC_BENCH_RDKAFKA) and psql (PG*, the owner).
DEV_SECURE=()
TC_BENCH_SECURE_SET=""
if [ "${TC_BENCH_SECURE:-0}" = 1 ]; then
  DEV_SECURE=(--secure)
  scripts/dev-services --secure up >/dev/null
  eval "$(scripts/dev-services --secure env)"
  export THERMOCLINE_KAFKA_BROKERS=$THERMOCLINE_SECURE_KAFKA_BROKERS
  export THERMOCLINE_PG_OWNER_DSN=$THERMOCLINE_SECURE_PG_DSN
  export THERMOCLINE_PG_DSN=$THERMOCLINE_SECURE_PG_INGEST_DSN
  export PGPORT=${THERMOCLINE_SECURE_PG_DSN#*port=} PGUSER=thermocline PGSSLMODE=verify-full
  PGPORT=${PGPORT%% *}
  export PGSSLROOTCERT=$THERMOCLINE_SECURE_CA_FILE PGPASSFILE=$THERMOCLINE_SECURE_SECRETS/pgpass
  TC_BENCH_SECURE_SET="kafka.security_protocol=sasl_ssl kafka.sasl.mechanism=PLAIN
    kafka.tls.ca_file=$THERMOCLINE_SECURE_CA_FILE kafka.sasl.username=admin
    kafka.sasl.password_file=$THERMOCLINE_SECURE_SECRETS/admin.password"
  TC_BENCH_RDKAFKA="security.protocol=sasl_ssl sasl.mechanism=PLAIN sasl.username=admin"
  TC_BENCH_RDKAFKA+=" sasl.password=$(tr -d '\n' <"$THERMOCLINE_SECURE_SECRETS/admin.password")"
  TC_BENCH_RDKAFKA+=" ssl.ca.location=$THERMOCLINE_SECURE_CA_FILE"
  export TC_BENCH_RDKAFKA
fi

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

# The postmaster of the PostgreSQL server the benchmark talks to (PG* above): the parent of that
# server's checkpointer. The machine may run other servers (the secure dev services, the fault
# suite's own), whose processes are also called "postgres"; bench_cpu counts this one's only.
BENCH_PG_POSTMASTER=$(psql -qAtc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'" 2>/dev/null |
  { read -r pid && awk '{print $4}' "/proc/$pid/stat" 2>/dev/null; } || true)
export BENCH_PG_POSTMASTER

# CPU seconds used so far by PostgreSQL and by the broker, as "PG BROKER". PostgreSQL: the user +
# system time of every live process of the server's postmaster (client backends, walwriter,
# checkpointer, background writer, autovacuum, TimescaleDB's job workers) plus the postmaster's
# own and its children times (what its exited backends used, a pipeline's included once it has
# disconnected) -- the kernel's accounting from /proc, at 1/CLK_TCK resolution. Other clients of
# the same server are included: measure on a quiet server. Without BENCH_PG_POSTMASTER, every
# process called postgres. The broker is the java process running kafka.Kafka. Neither counts the
# pipeline or this script.
bench_cpu() {
  python3 - <<'PY'
import os
hz, pg, broker = os.sysconf("SC_CLK_TCK"), 0, 0
pm = os.environ.get("BENCH_PG_POSTMASTER", "")
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        continue
    name, f = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
    if name == "postgres" and (not pm or pid == pm or f[1] == pm):
        pg += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    elif name == "java" and b"kafka.Kafka" in cmd:
        broker += int(f[11]) + int(f[12])
print(pg / hz, broker / hz)
PY
}

# Other clients of the server, which bench_cpu counts too: "CONNECTED ACTIVE", the client backends
# other than this query's, and those of them running a statement. Taken before and after a phase,
# a witness of how quiet the server was (a registry started for the run counts as connected).
bench_pg_others() {
  psql -qAtF' ' -c "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity
                    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null ||
    echo "0 0"
}

# Write every dirty buffer now, so that the phase measured next starts from clean buffers and a
# checkpoint due anyway does not land inside it. Needs a superuser or pg_checkpoint (PostgreSQL 15);
# without either the phases are measured as they come.
bench_checkpoint() {
  psql -qAtc "CHECKPOINT" >/dev/null 2>&1 || true
}

# The difference of two bench_cpu outputs, "PG BROKER" rounded.
bench_cpu_delta() {
  python3 -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split()
print(*(round(float(y) - float(x), 2) for x, y in zip(a, b)))' "$1" "$2"
}

# The CPU seconds sink $2 cost a run whose log is $1, as its last progress line says (process/
# status.c: ", NAME ROWS (cpu S s)": the pipeline thread in the sink's calls and the sink's own
# threads); 0 when the log has none.
bench_sink_cpu() {
  python3 -c 'import json, re, sys
cpu = 0.0
for line in open(sys.argv[1], errors="replace"):
    try:
        msg = json.loads(line).get("msg", "")
    except ValueError:
        continue
    m = re.search(r", " + re.escape(sys.argv[2]) + r" \d+ \(cpu ([0-9.]+) s\)", msg)
    if msg.startswith("progress: ") and m:
        cpu = float(m.group(1))
print(cpu)' "$1" "$2"
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
  # The registry writes its own tables: the owner's DSN when the pipeline's is the ingest role's.
  "$BIN" registry --listen "127.0.0.1:$port" --schema "$1" \
    ${THERMOCLINE_PG_OWNER_DSN:+--set "postgres.dsn=$THERMOCLINE_PG_OWNER_DSN"} 2>"$2" &
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
      scripts/dev-services "${DEV_SECURE[@]}" topics --delete --if-exists --topic "$t" >/dev/null 2>&1 || true
    done
    shift
  done
  [ $# -gt 0 ] && shift
  # A store's api and audit schemas are <schema>_api and <schema>_audit (postgres.api_schema and
  # audit.schema left empty, as the benches leave them), made by migrate beside the store: left
  # behind, two schemas pile up a run.
  for t in "$@"; do
    psql -qAtc "DROP SCHEMA IF EXISTS \"$t\", \"${t}_api\", \"${t}_audit\" CASCADE" >/dev/null 2>&1 || true
  done
}

# The store's next offsets on topic $2 in schema $1, summed over partitions: the marks of the
# pipeline's consumer group ($3, default the topic, as the bench scripts set kafka.group) only --
# the other sinks' marks ("<group>/rollups", ...) are in the same table, and counting them too
# reached the count produced with half of it stored.
bench_stored_offsets() {
  psql -qAtc "SELECT coalesce(sum(next_offset), 0) FROM \"$1\".ingest_offsets WHERE topic = '$2' AND group_id = '${3:-$2}'"
}
