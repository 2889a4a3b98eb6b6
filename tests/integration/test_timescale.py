"""The operational store in TimescaleDB mode (postgres.timescaledb=on): hypertable, compression,
retention and continuous-aggregate policies, late readings into compressed chunks, and continuous
aggregates equal to the raw aggregates. Skipped where the extension is not installed or not
preloaded (scripts/dev-services preloads it when its library is installed)."""

import os
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from oracle import METRICS
from test_store import latest_mismatches, view_mismatches


def _timescaledb_usable():
    dsn = os.environ.get("THERMOCLINE_PG_DSN")
    if not dsn:
        return False, "THERMOCLINE_PG_DSN is not set"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT default_version FROM pg_available_extensions"
                           " WHERE name = 'timescaledb'").fetchone()
        if not row:
            return False, ("TimescaleDB extension not installed on the PostgreSQL server: the"
                           " store runs in plain mode (tests/integration/test_store.py)")
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
        if "timescaledb" not in preload:
            return False, (f"TimescaleDB {row[0]} is installed but not in shared_preload_libraries"
                           " (restart with scripts/dev-services restart postgres)")
    return True, ""


USABLE, WHY = _timescaledb_usable()
pytestmark = pytest.mark.skipif(not USABLE, reason=WHY)

ON = "postgres.timescaledb=on"


@pytest.fixture
def ts(tc):
    settings = tc.settings
    tc.settings = lambda extra=(): settings((ON, *extra))
    return tc


def execute(tc, query, params=None):
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute(query, params)


def refresh(tc):
    for view in ("readings_1m", "readings_1h"):
        # The refresh policy's background job may be refreshing the same window right now.
        for attempt in range(20):
            try:
                execute(tc, f"CALL public.refresh_continuous_aggregate('\"{tc.schema}\".{view}', NULL, NULL)")
                break
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                time.sleep(0.5)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_hypertable_and_policies(ts):
    tc = ts
    tc.migrate()
    tc.migrate()
    assert tc.sql("SELECT mode FROM store_mode") == [("timescaledb",)]
    assert [r[0] for r in tc.sql("SELECT version FROM schema_migrations ORDER BY 1")] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    (compressed,) = tc.sql(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'")[0]
    assert compressed
    (interval,) = tc.sql(
        "SELECT time_interval FROM timescaledb_information.dimensions"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'")[0]
    assert interval == timedelta(days=1)
    settings = {r[0]: r for r in tc.sql(
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc"
        " FROM timescaledb_information.compression_settings"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'")}
    assert settings["device_id"][1] == 1
    assert settings["time"][2] == 1 and settings["time"][3] is False
    jobs = sorted((r[0], r[1]) for r in tc.sql(
        "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs j"
        " WHERE hypertable_schema = current_schema()"
        " UNION ALL SELECT j.proc_name, c.view_name FROM timescaledb_information.jobs j"
        " JOIN timescaledb_information.continuous_aggregates c"
        " ON c.materialization_hypertable_schema = j.hypertable_schema"
        " AND c.materialization_hypertable_name = j.hypertable_name"
        " WHERE c.view_schema = current_schema()"))
    assert ("policy_compression", "readings") in jobs, jobs
    assert ("policy_retention", "readings") in jobs, jobs
    assert ("policy_refresh_continuous_aggregate", "readings_1m") in jobs, jobs
    assert ("policy_refresh_continuous_aggregate", "readings_1h") in jobs, jobs
    assert ("policy_retention", "readings_1m") in jobs, jobs
    config = dict(tc.sql(
        "SELECT proc_name, config::text FROM timescaledb_information.jobs"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = 'readings'"))
    assert '"compress_after": "7 days"' in config["policy_compression"] or \
        "168:00:00" in config["policy_compression"], config
    assert "720:00:00" in config["policy_retention"] or "30 days" in config["policy_retention"]
    views = {r[0] for r in tc.sql(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = current_schema()")}
    assert views == {"readings_1m", "readings_1h"}
    idx = [r[0] for r in tc.sql("SELECT indexdef FROM pg_indexes WHERE schemaname ="
                                " current_schema() AND tablename = 'readings'")]
    assert any("device_id, \"time\" DESC" in i for i in idx), idx
    out = tc.cmd("retention", "--dry-run").stdout
    assert "TimescaleDB mode" in out and "retention policy" in out, out
    # Same view shape as plain mode.
    for view in ("readings_1m", "readings_1h"):
        cols = [r[0] for r in tc.sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (view,))]
        assert cols == ["device_id", "bucket", "n"] + [
            f"{m}_{s}" for m in METRICS for s in ("avg", "min", "max", "n")]


def test_pipeline_and_continuous_aggregates(ts):
    tc = ts
    tc.migrate()
    summary = tc.simulate("--devices", "200", "--count", "20000", "--invalid-ratio", "0.01",
                          "--seed", "11")
    tc.run(idle=3)
    exp = tc.oracle().expect()
    (count, distinct) = tc.sql(
        "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM readings")[0]
    assert count == exp["valid"] == summary["valid"] and distinct == count
    for m in METRICS:
        (n,) = tc.sql(f"SELECT count({m}) FROM readings")[0]
        assert n == exp["counts"][m]
    refresh(tc)
    assert view_mismatches(tc, "readings_1m", "1 minute") == []
    assert view_mismatches(tc, "readings_1h", "1 hour") == []
    assert latest_mismatches(tc) == []
    assert tc.sql("SELECT sum(n) FROM readings_1m")[0][0] == count


def test_late_reading_into_a_compressed_chunk(ts):
    tc = ts
    tc.migrate()
    start = datetime.now(timezone.utc).replace(hour=3, minute=0, second=0, microsecond=0) \
        - timedelta(days=10)
    tc.simulate("--devices", "20", "--count", "2000", "--seed", "7", "--start", rfc3339(start))
    tc.run(idle=2)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2000
    chunks = tc.sql(f"SELECT public.compress_chunk(c)::text FROM public.show_chunks('\"{tc.schema}\".readings',"
                    " older_than => INTERVAL '9 days') c")
    assert len(chunks) >= 1
    (compressed,) = tc.sql(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema ="
        " current_schema() AND hypertable_name = 'readings' AND is_compressed")[0]
    assert compressed == len(chunks)

    # A late reading for the same hour, through the whole pipeline (binary COPY).
    late = start + timedelta(minutes=30, seconds=1)
    tc.simulate("--devices", "1", "--count", "1", "--seed", "8", "--start", rfc3339(late))
    tc.run(idle=2)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2001
    # The newest transaction holds just the late reading, in the compressed chunk's day.
    rows = tc.sql("SELECT time FROM readings WHERE ingested_at = (SELECT max(ingested_at)"
                  " FROM readings)")
    assert len(rows) == 1, rows
    assert abs(rows[0][0] - late) < timedelta(minutes=5), (rows, late)
    (still,) = tc.sql(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema ="
        " current_schema() AND hypertable_name = 'readings' AND is_compressed")[0]
    assert still == compressed
    # And straight SQL into the compressed chunk, then read back by device.
    execute(tc, "INSERT INTO readings (time, device_id, temperature, kafka_partition,"
                " kafka_offset) VALUES (%s, 'late-device', 12.25, 0, 999999)",
            (start + timedelta(minutes=1),))
    assert tc.sql("SELECT temperature FROM readings WHERE device_id = 'late-device'") == [(12.25,)]
    refresh(tc)
    assert view_mismatches(tc, "readings_1m", "1 minute") == []
    assert view_mismatches(tc, "readings_1h", "1 hour") == []


def test_retention_policy_drops_old_chunks(ts):
    """The policy's own procedure, run now, drops chunks past the age and keeps the rest."""
    tc = ts
    tc.migrate()
    old = datetime.now(timezone.utc) - timedelta(days=40)
    execute(tc, "INSERT INTO readings (time, device_id, kafka_partition, kafka_offset)"
                " VALUES (%s, 'd', 0, 1), (now(), 'd', 0, 2)", (old,))
    (job,) = tc.sql("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name ="
                    " 'policy_retention' AND hypertable_schema = current_schema()"
                    " AND hypertable_name = 'readings'")[0]
    t0 = time.time()
    execute(tc, f"CALL public.run_job({job})")
    assert time.time() - t0 < 60
    assert tc.sql("SELECT kafka_offset FROM readings") == [(2,)]
