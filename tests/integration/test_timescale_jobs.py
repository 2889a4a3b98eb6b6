"""TimescaleDB mode under its own background scheduler: every policy the migrations add
(compression and retention of readings, the refreshes of readings_1m and readings_1h, the
retention of readings_1m) is run by the scheduler -- not by CALL run_job in the foreground -- and
ends with last_run_status = 'Success'; a job that fails is reported by `thermocline retention`
(which fails, naming it and its error) and by /metrics.

TimescaleDB must be preloaded (shared_preload_libraries), and the shared PostgreSQL is everyone's:
the test starts a PostgreSQL 15 of its own with scripts/dev-services (a state directory and port of
its own, TC_TIMESCALE_PG_PORT, default 26432), which preloads TimescaleDB when its library is
installed, and holds /tmp/tc-timescale.lock meanwhile: another run's teardown would stop it. Skipped when it is not (TimescaleDB has no Debian 12 package: docs/store.md says which
versions were tested)."""

import fcntl
import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import ROOT, Thermocline, tag_of
from test_observe import free_port, get, metrics, _up
from waits import LogLines, wait_for

DEV = os.path.join(ROOT, "scripts", "dev-services")


def _pkglibdir():
    pg_config = shutil.which("pg_config") or "/usr/lib/postgresql/15/bin/pg_config"
    try:
        return subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "/usr/lib/postgresql/15/lib"


pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(_pkglibdir(), "timescaledb.so")),
    reason="TimescaleDB is not installed in the PostgreSQL 15 library directory")

# The policies the migrations add, as (procedure, what it acts on).
POLICIES = sorted([
    ("policy_compression", "readings"),
    ("policy_retention", "readings"),
    ("policy_refresh_continuous_aggregate", "readings_1m"),
    ("policy_refresh_continuous_aggregate", "readings_1h"),
    ("policy_retention", "readings_1m"),
])

# The schema's jobs (the jobs view names a continuous aggregate's by its view) and their last runs.
JOBS_SQL = (
    "SELECT j.job_id, j.proc_name, j.hypertable_name, s.last_run_status,"
    " coalesce(s.total_runs, 0) FROM timescaledb_information.jobs j"
    " LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id"
    " WHERE j.hypertable_schema = current_schema() ORDER BY 1")


@pytest.fixture(scope="module")
def timescale_pg():
    """A PostgreSQL 15 of the test's own with TimescaleDB preloaded: its DSN."""
    state = ("/var/lib/thermocline-timescale" if os.geteuid() == 0 else
             os.path.join(os.path.expanduser("~"), ".cache", "thermocline-timescale"))
    # Below Linux's ephemeral range (32768-60999): a port in it can be held by any client socket of
    # the run (35432 was, once, and this cluster could not listen).
    port = int(os.environ.get("TC_TIMESCALE_PG_PORT", "26432"))
    env = dict(os.environ)
    env.update({"THERMOCLINE_STATE_DIR": os.environ.get("TC_TIMESCALE_STATE_DIR", state),
                "THERMOCLINE_PG_PORT": str(port)})
    # Never the shared instance's address, whatever the calling shell exported.
    for k in ("THERMOCLINE_PG_DSN", "PGHOST", "PGPORT", "THERMOCLINE_LAKE_DIR"):
        env.pop(k, None)

    def dev(*args):
        proc = subprocess.run([DEV, *args], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"dev-services {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"

    with open("/tmp/tc-timescale.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        dev("up", "postgres")
        dsn = f"host=127.0.0.1 port={port} dbname=thermocline user=postgres connect_timeout=5"
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
            assert "timescaledb" in preload, f"dev-services did not preload TimescaleDB: {preload!r}"
            yield dsn
        finally:
            dev("down", "postgres")


@pytest.fixture
def ts(request, timescale_pg, monkeypatch):
    monkeypatch.setenv("THERMOCLINE_PG_DSN", timescale_pg)
    tc = Thermocline(tag_of(request))
    settings = tc.settings
    tc.settings = lambda extra=(): settings(("postgres.timescaledb=on", *extra))
    yield tc
    tc.drop()


def execute(tc, query, params=None):
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute(query, params)


def jobs(tc):
    return tc.sql(JOBS_SQL)


def run_now(tc, job_id):
    """Make the job due now: the scheduler starts it, in the background."""
    execute(tc, "SELECT public.alter_job(%s::int, next_start => now())", (job_id,))


def test_scheduler_runs_every_policy_and_a_failing_job_is_reported(ts):
    tc = ts
    tc.migrate()
    now = datetime.now(timezone.utc)
    # A chunk past the retention age (30 days), one past the compression age (7 days), today's.
    execute(tc, "INSERT INTO readings (time, device_id, kafka_partition, kafka_offset, temperature)"
                " VALUES (%s, 'd', 0, 1, 1.5), (%s, 'd', 0, 2, 2.5), (%s, 'd', 0, 3, 3.5)",
            (now - timedelta(days=40), now - timedelta(days=10), now))
    found = jobs(tc)
    assert sorted((proc, target) for _, proc, target, _, _ in found) == POLICIES, found
    ids = {job_id: (proc, target) for job_id, proc, target, _, _ in found}
    # Runs before now (a policy may run once when it is added) ran on an empty table: only runs
    # after these count.
    before = {job_id: runs for job_id, _, _, _, runs in found}
    for job_id in ids:
        run_now(tc, job_id)

    def all_succeeded():
        got = {j: (status, runs) for j, _, _, status, runs in jobs(tc)}
        failed = {ids[j]: s for j, (s, _) in got.items() if s == "Failed"}
        assert not failed, f"the scheduler's runs failed: {failed} -- see the database's log"
        return all(s == "Success" and n > before[j] for j, (s, n) in got.items())
    wait_for(all_succeeded, timeout=300, what="every policy's last run 'Success'", interval=0.5)

    # What the policies did: the old chunk is gone, the 10-day-old one compressed, the
    # aggregates refreshed over what is left.
    assert [r[0] for r in tc.sql("SELECT kafka_offset FROM readings ORDER BY 1")] == [2, 3]
    (compressed,) = tc.sql(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema ="
        " current_schema() AND hypertable_name = 'readings' AND is_compressed")[0]
    assert compressed == 1
    out = tc.cmd("retention").stdout
    assert "TimescaleDB mode" in out and "retention policy" in out, out
    # --max-age cannot change the policy: refused, not silently ignored.
    r = tc.cmd("retention", "--max-age", "86400", check=False)
    assert r.returncode == 2 and "--max-age applies to plain mode" in r.stderr, r.stderr

    # A job that fails: the compression policy is pointed, behind alter_job's checks, at a
    # hypertable without compression that has a chunk old enough. The scheduler records the
    # failure and retries ever less often.
    comp = next(j for j, p in ids.items() if p == ("policy_compression", "readings"))
    execute(tc, "CREATE TABLE uncompressed (time timestamptz NOT NULL)")
    execute(tc, "SELECT public.create_hypertable('uncompressed', 'time')")
    # Twenty days back, not ten: the hypertable's chunks are 7 days aligned to Thursdays, and a
    # row ten days old lay in a chunk ending less than 7 days ago on three days of the week, which
    # the policy leaves alone (it then succeeded, converting nothing).
    execute(tc, "INSERT INTO uncompressed VALUES (%s)", (now - timedelta(days=20),))
    execute(tc, "UPDATE _timescaledb_config.bgw_job SET hypertable_id = h.id, config ="
                " jsonb_set(config, '{hypertable_id}', to_jsonb(h.id)) FROM"
                " _timescaledb_catalog.hypertable h WHERE h.schema_name = current_schema()"
                " AND h.table_name = 'uncompressed' AND bgw_job.id = %s", (comp,))
    run_now(tc, comp)
    wait_for(lambda: {j: s for j, _, _, s, _ in jobs(tc)}[comp] == "Failed", timeout=300,
             what=f"job {comp} failing", interval=0.5)
    r = tc.cmd("retention", check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "1 TimescaleDB job(s)" in r.stderr, r.stderr
    assert f"job {comp} (policy_compression on uncompressed, " in r.stderr, r.stderr
    assert "chunks to columnstore" in r.stderr, r.stderr  # the job's own error message

    # /metrics: the failing job beside the others.
    tc.simulate("--count", "0")  # creates the topic
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}", "http.storage_sample_s=1"))
    log = LogLines(proc.stderr)
    try:
        wait_for(lambda: _up(port), what="the HTTP listener", proc=proc, log=log)
        failed = "thermocline_timescaledb_job_last_run_failed{job_id=\"%s\",proc=\"%s\"}"
        m = wait_for(lambda: (lambda m: m if failed % (comp, "policy_compression") in m else None)(
            metrics(port)), timeout=120, what="the jobs on /metrics", proc=proc, log=log)
        for job_id, (p, _) in ids.items():
            assert m[failed % (job_id, p)] == (1 if job_id == comp else 0), (job_id, p)
        assert m['thermocline_timescaledb_job_failures_total{job_id="%s",proc="policy_compression"}'
                 % comp] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.join()
        proc.stdout.close()
        proc.stderr.close()
    tc.assert_clean(log.text())
