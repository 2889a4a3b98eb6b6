"""The operational store in plain-PostgreSQL mode (forced with postgres.timescaledb=off, so these
tests mean the same on a machine that has TimescaleDB): daily partitions ahead and on demand, BRIN,
retention that waits for the lake, rollups and `latest` kept exactly once in the batch's
transaction, and views equal to the raw-SQL aggregates they stand for."""

import os
import signal
import time
from datetime import date, datetime, timedelta, timezone

import psycopg
import pyarrow.dataset as ds
import pytest

from oracle import METRICS
from test_pipeline import group_lag
from waits import LogLines, stop_process, wait_for, wait_for_rows

PLAIN = "postgres.timescaledb=off"


@pytest.fixture
def plain(tc):
    """The tc fixture with every command forced into plain mode."""
    settings = tc.settings
    tc.settings = lambda extra=(): settings((PLAIN, *extra))
    return tc


def execute(tc, query, params=None):
    """A statement (or several, without params) that returns no rows, in the test's schema."""
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute(query, params)


def partitions(tc, table="readings"):
    return {r[0] for r in tc.sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
        " WHERE p.relname = %s AND n.nspname = current_schema()", (table,))}


def part_name(d, table="readings"):
    return d.strftime(f"{table}_p%Y%m%d")


def utc_today():
    return datetime.now(timezone.utc).date()


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# Rollup table vs raw readings, per device and bucket: counts, minima and maxima exactly; sums to
# 1e-9 relative (both are float8 sums, added in a different order). Returns the mismatching groups.
def rollup_mismatches(tc, table, width, metrics=METRICS, where=None):
    """Buckets of the table (or live view) that differ from the readings' (where: an SQL
    condition on the readings, to compare with part of them)."""
    per_metric_raw = ", ".join(
        f"count({m}) AS {m}_n, coalesce(sum({m}), 0) AS {m}_sum, min({m}) AS {m}_min,"
        f" max({m}) AS {m}_max" for m in metrics)
    checks = " OR ".join(
        f"r.{m}_n IS DISTINCT FROM x.{m}_n OR r.{m}_min IS DISTINCT FROM x.{m}_min"
        f" OR r.{m}_max IS DISTINCT FROM x.{m}_max"
        f" OR abs(r.{m}_sum - x.{m}_sum) > 1e-9 * greatest(1, abs(r.{m}_sum))" for m in metrics)
    return tc.sql(
        f"WITH raw AS (SELECT device_id, date_bin('{width}', time, TIMESTAMPTZ '1970-01-01Z')"
        f" AS bucket, count(*) AS n, {per_metric_raw} FROM readings"
        f" WHERE {where or 'true'} GROUP BY 1, 2)"
        f" SELECT device_id, bucket, r.n, x.n FROM raw r FULL JOIN {table} x"
        f" USING (device_id, bucket) WHERE r.n IS DISTINCT FROM x.n OR {checks} LIMIT 5")


def view_mismatches(tc, view, width, metrics=METRICS):
    """The view (plain mode: over the rollup table) against the same aggregate of the raw rows."""
    raw_cols = ", ".join(
        f"avg({m}) AS {m}_avg, min({m}) AS {m}_min, max({m}) AS {m}_max, count({m}) AS {m}_n"
        for m in metrics)
    checks = " OR ".join(
        f"r.{m}_n IS DISTINCT FROM v.{m}_n OR r.{m}_min IS DISTINCT FROM v.{m}_min"
        f" OR r.{m}_max IS DISTINCT FROM v.{m}_max"
        f" OR (r.{m}_avg IS NULL) <> (v.{m}_avg IS NULL)"
        f" OR abs(r.{m}_avg - v.{m}_avg) > 1e-9 * greatest(1, abs(r.{m}_avg))" for m in metrics)
    return tc.sql(
        f"WITH r AS (SELECT device_id, date_bin('{width}', time, TIMESTAMPTZ '1970-01-01Z')"
        f" AS bucket, count(*) AS n, {raw_cols} FROM readings GROUP BY 1, 2)"
        f" SELECT device_id, bucket, r.n, v.n FROM r FULL JOIN {view} v USING (device_id, bucket)"
        f" WHERE r.n IS DISTINCT FROM v.n OR {checks} LIMIT 5")


def latest_mismatches(tc):
    cols = ", ".join(METRICS)
    return tc.sql(
        f"WITH r AS (SELECT DISTINCT ON (device_id) device_id, time, {cols}, tags, extra,"
        f" kafka_partition, kafka_offset FROM readings"
        f" ORDER BY device_id, time DESC, kafka_partition DESC, kafka_offset DESC)"
        f" SELECT device_id FROM r FULL JOIN latest l USING (device_id)"
        f" WHERE (r.time, r.kafka_partition, r.kafka_offset) IS DISTINCT FROM"
        f" (l.time, l.kafka_partition, l.kafka_offset)"
        f" OR r.tags IS DISTINCT FROM l.tags OR r.extra IS DISTINCT FROM l.extra OR "
        + " OR ".join(f"r.{m} IS DISTINCT FROM l.{m}" for m in METRICS) + " LIMIT 5")


def assert_derived_exact(tc):
    (count, distinct) = tc.sql(
        "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM readings")[0]
    assert count > 0 and distinct == count, "a Kafka message was stored twice"
    assert rollup_mismatches(tc, "rollup_1m_live", "1 minute") == []
    assert rollup_mismatches(tc, "rollup_1h_live", "1 hour") == []
    assert view_mismatches(tc, "readings_1m", "1 minute") == []
    assert view_mismatches(tc, "readings_1h", "1 hour") == []
    assert latest_mismatches(tc) == []
    assert_closed_buckets_exact(tc)


def assert_closed_buckets_exact(tc):
    """The rollup tables hold every closed bucket (before rollup_state's marks), exact against
    the readings, and no open one; the views did the rest (above)."""
    for table, width, col in (("rollup_1m", "1 minute", "materialized_1m"),
                              ("rollup_1h", "1 hour", "materialized_1h")):
        mark = f"(SELECT {col} FROM rollup_state)"
        assert tc.sql(f"SELECT count(*) FROM {table} WHERE bucket >= {mark}")[0][0] == 0
        (closed,) = tc.sql(f"SELECT count(*) FROM readings WHERE time < {mark}")[0]
        assert tc.sql(f"SELECT coalesce(sum(n), 0) FROM {table}")[0][0] == closed, table
        assert rollup_mismatches(tc, table, width, where=f"time < {mark}") == [], table
    assert tag_rollup_mismatches(tc) == []


# A row's key, NULLs and all, as one value a FULL JOIN can match on.
KEY = "concat_ws('|', coalesce(site, '<null>'), coalesce(tag, '<null>'), coalesce(value, '<null>'), bucket)"


def tag_rollup_mismatches(tc, site_tag="site"):
    """rollup_tag_1h (plain mode, schema version 7, kept row by row as rollup_1h changes) against
    rollup_1h aggregated afresh by the tags of device_tag_history at each hour: per site, tag and
    value, and per site with tag NULL; and rollup_tag_open (version 9, kept as rollup_1m changes)
    from H on against rollup_1m's minutes from H on, added up per device and hour, alike. Nothing
    to compare before the api's migration filled them."""
    if not tc.sql("SELECT to_regclass('rollup_tag_state') IS NOT NULL AND"
                  " (SELECT site_tag FROM rollup_tag_state) IS NOT NULL")[0][0]:
        return []
    sums = ", ".join(f"sum(x.{m}_n) AS {m}_n, sum(x.{m}_sum) AS {m}_sum" for m in METRICS)
    h = "(SELECT materialized_1h FROM rollup_state)"
    pairs = [("rollup_1h", "rollup_tag_1h")]
    if tc.sql("SELECT to_regclass('rollup_tag_open') IS NOT NULL")[0][0]:
        pairs.append((f"(SELECT x.device_id, date_bin('1 hour', x.bucket, '2000-01-01 00:00:00+00') AS bucket,"
                      f" sum(x.n) AS n, {sums} FROM rollup_1m x WHERE x.bucket >= {h} GROUP BY 1, 2)",
                      f"rollup_tag_open WHERE bucket >= {h}"))
    return [row for source, table in pairs for row in tag_mismatches(tc, source, table, sums, site_tag)]


def tag_mismatches(tc, source, table, sums, site_tag):
    """The rows of table (rows of devices <> 0) against source's per device and hour, aggregated."""
    checks = " OR ".join(f"a.{m}_n IS DISTINCT FROM t.{m}_n OR abs(a.{m}_sum - t.{m}_sum) > 1e-9 *"
                         f" greatest(1, abs(a.{m}_sum))" for m in METRICS)
    return tc.sql(
        f"WITH a AS (SELECT g.tags->>%s AS site, e.key AS tag, e.value, x.bucket, count(*) AS devices,"
        f" sum(x.n) AS n, {sums} FROM {source} x CROSS JOIN LATERAL (SELECT h.tags FROM"
        " device_tag_history h WHERE h.device_id = x.device_id AND h.since <= x.bucket ORDER BY"
        " h.since DESC LIMIT 1) g CROSS JOIN LATERAL (SELECT key, value FROM jsonb_each_text(coalesce("
        " g.tags, '{}')) UNION ALL SELECT NULL, NULL) e GROUP BY 1, 2, 3, 4),"
        f" t AS (SELECT * FROM {table}{' AND' if ' WHERE ' in table else ' WHERE'} devices <> 0)"
        f" SELECT k, a.devices, t.devices FROM (SELECT {KEY} AS k, * FROM a) a"
        f" FULL JOIN (SELECT {KEY} AS k, * FROM t) t USING (k)"
        f" WHERE a.devices IS DISTINCT FROM t.devices OR a.n IS DISTINCT FROM t.n OR {checks} LIMIT 5",
        (site_tag,))


def test_plain_mode_objects(plain):
    tc = plain
    tc.migrate()
    tc.migrate()
    assert tc.sql("SELECT mode FROM store_mode") == [("plain",)]
    assert [r[0] for r in tc.sql("SELECT version FROM schema_migrations ORDER BY 1")] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    for table in ("readings", "rollup_1m"):
        (kind,) = tc.sql("SELECT relkind::text FROM pg_class WHERE oid = %s::regclass", (table,))[0]
        assert kind == "p", table
    parts, rollup_days = partitions(tc), partitions(tc, "rollup_1m")
    today = utc_today()
    for d in range(-31, 3):
        assert part_name(today + timedelta(days=d)) in parts, d
        assert part_name(today + timedelta(days=d), "rollup_1m") in rollup_days, d
    # A new schema's rollup_1m is days' partitions only.
    assert len(rollup_days) == len(parts)
    idx = {name: definition for name, definition in tc.sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = 'readings'")}
    assert "USING brin (\"time\")" in idx["readings_time_brin"], idx
    assert "device_id, \"time\" DESC" in idx["readings_device_time_idx"], idx
    # Every partition carries both indexes.
    (brins,) = tc.sql(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename LIKE 'readings_p%' AND indexdef LIKE '%USING brin%'")[0]
    assert brins == len(parts)
    cols = [r[0] for r in tc.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'lake_files' ORDER BY ordinal_position")]
    assert cols == ["path", "day", "kafka_partition", "first_offset", "last_offset", "rows",
                    "bytes", "committed_at"]
    for view in ("readings_1m", "readings_1h"):
        cols = [r[0] for r in tc.sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (view,))]
        assert cols[:3] == ["device_id", "bucket", "n"]
        assert cols[3:] == [f"{m}_{s}" for m in METRICS for s in ("avg", "min", "max", "n")]
    # A new schema has every bucket open: the views compute them all from the readings.
    assert tc.sql("SELECT materialized_1m::text, materialized_1h::text FROM rollup_state") == [
        ("-infinity", "-infinity")]
    # Retention in plain mode on a fresh schema: nothing is old enough yet except empty days.
    out = tc.cmd("retention", "--dry-run").stdout
    assert "plain mode" in out


def test_late_readings_get_a_partition_on_demand(plain):
    """Readings 20 days old whose day's partition was dropped while the pipeline runs (the
    pipeline's cache still believes in it): the partition is created again and nothing is lost."""
    tc = plain
    tc.migrate()
    proc = tc.spawn("run", extra=("pipeline.batch_timeout_ms=200",))
    log = LogLines(proc.stderr)
    try:
        # Partitions around today are made at start, then the group is joined.
        log.wait('"consuming ', proc=proc)
        late = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0) \
            - timedelta(days=20)
        day = part_name(late.date())
        assert day in partitions(tc)
        execute(tc, f'DROP TABLE "{day}"')
        assert day not in partitions(tc)
        summary = tc.simulate("--devices", "20", "--count", "400", "--seed", "5", "--start",
                              rfc3339(late))
        wait_for_rows(tc, "SELECT count(*) FROM readings", 400, proc=proc, log=log)
    finally:
        stop_process(proc, log)
    err = log.text()
    tc.assert_clean(err)
    assert proc.returncode == 0, err[-4000:]
    assert summary["valid"] == 400
    assert day in partitions(tc)
    (n,) = tc.sql(f'SELECT count(*) FROM "{day}"')[0]
    assert n == 400
    assert_derived_exact(tc)


def lake_progress(lake, topic, partition, next_offset):
    """Write a lake progress file by hand (the lake's commit point, which retention reads)."""
    d = os.path.join(lake, "_thermocline", "progress", topic)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, str(partition)), "w") as f:
        f.write(f"{next_offset}\n")


def _old_day_fixture(tc, lake=None):
    """Rows in days 15 and 12 days ago and today, rollups for them, and a lake whose progress
    holds all of day -15 (partitions 0 and 1) but only part of day -12 (its partition-1 row is at
    the lake's progress, not below it)."""
    today = utc_today()
    d15, d12 = today - timedelta(days=15), today - timedelta(days=12)
    rows = ((d15, 0, 0), (d15, 0, 1), (d15, 1, 0), (d12, 0, 2), (d12, 1, 1), (today, 0, 3),
            (today, 0, 4))
    for i, (d, part, offset) in enumerate(rows):
        t = datetime(d.year, d.month, d.day, 0, 30 + i, tzinfo=timezone.utc)
        execute(tc, "INSERT INTO readings (time, device_id, temperature, kafka_partition,"
               " kafka_offset) VALUES (%s, 'dev-1', 20, %s, %s)", (t, part, offset))
        execute(tc, "INSERT INTO rollup_1m (device_id, bucket, n) VALUES ('dev-1', %s, 1)", (t,))
    if lake:
        lake_progress(lake, tc.topic, 0, 3)
        lake_progress(lake, tc.topic, 1, 1)
    return today, d15, d12


def test_retention_drops_only_days_the_lake_holds(plain, tmp_path):
    tc = plain
    tc.migrate()
    lake = str(tmp_path / "lake")
    today, d15, d12 = _old_day_fixture(tc, lake)
    before = partitions(tc)
    ten_days = ("retention.max_age_s=864000", f"lake.dir={lake}")

    out = tc.cmd("retention", "--dry-run", extra=ten_days).stdout
    assert f"{d15.isoformat()}  would drop" in out, out
    assert f"{d12.isoformat()}  kept (lake incomplete)" in out, out
    assert "rows 2, lake 1" in out and "rows 3, lake 3" in out, out
    assert partitions(tc) == before, "a dry run dropped something"

    out = tc.cmd("retention", extra=ten_days).stdout
    after = partitions(tc)
    assert part_name(d15) not in after
    assert part_name(d12) in after, "a day the lake does not fully hold was dropped"
    # The day's minutes went with it, as a partition of rollup_1m.
    rollup_days = partitions(tc, "rollup_1m")
    assert part_name(d15, "rollup_1m") not in rollup_days
    assert part_name(d12, "rollup_1m") in rollup_days
    # Every partition ending 10 days ago or earlier went (empty: the lake holds all 0 rows) except
    # day -12; the last 10 days, today and the days ahead stay.
    for d in range(-31, 3):
        day = today + timedelta(days=d)
        expect = d > -11 or day == d12
        assert (part_name(day) in after) == expect, (d, out)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 4
    assert tc.sql("SELECT count(*) FROM rollup_1m WHERE bucket < %s",
                  (datetime(d15.year, d15.month, d15.day, tzinfo=timezone.utc)
                   + timedelta(days=1),))[0][0] == 0
    assert tc.sql("SELECT count(*) FROM rollup_1m")[0][0] == 4

    # Once the lake has committed the rest of day -12, it goes too.
    lake_progress(lake, tc.topic, 1, 2)
    tc.cmd("retention", extra=ten_days)
    assert part_name(d12) not in partitions(tc)

    # The shortest age never takes today's partition, nor yesterday's before the first hour.
    tc.cmd("retention", extra=("retention.max_age_s=3600", "retention.require_lake=false"))
    after = partitions(tc)
    assert part_name(today) in after
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2


def test_retention_refuses_a_damaged_lake_progress(plain, tmp_path):
    """A progress file that does not hold an offset stops retention before anything is dropped,
    naming the file; it is never read as "the lake holds nothing" or as "everything"."""
    tc = plain
    tc.migrate()
    lake = str(tmp_path / "lake")
    _today, d15, _d12 = _old_day_fixture(tc, lake)
    with open(os.path.join(lake, "_thermocline", "progress", tc.topic, "0"), "w") as f:
        f.write("9x\n")
    before = partitions(tc)
    proc = tc.cmd("retention", extra=("retention.max_age_s=864000", f"lake.dir={lake}"),
                  check=False)
    assert proc.returncode != 0
    assert f"_thermocline/progress/{tc.topic}/0" in proc.stderr, proc.stderr
    assert part_name(d15) in partitions(tc) and partitions(tc) <= before


def test_retention_waits_for_the_lakes_commits(plain, tmp_path):
    """End to end, nothing by hand: readings 15 days old written to the store by a pipeline without
    a lake are kept by a 10-day retention while the lake lacks them; once a pipeline with the lake
    has committed them (catching up from Kafka), the same retention drops their day."""
    tc = plain
    tc.migrate()
    lake = str(tmp_path / "lake")
    old = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0) \
        - timedelta(days=15)
    day = part_name(old.date())
    summary = tc.simulate("--devices", "30", "--count", "3000", "--seed", "21", "--start",
                          rfc3339(old))
    assert summary["valid"] == 3000
    tc.run(idle=2)
    assert tc.sql(f'SELECT count(*) FROM "{day}"')[0][0] == 3000
    ten_days = ("retention.max_age_s=864000", f"lake.dir={lake}")

    out = tc.cmd("retention", extra=ten_days).stdout
    assert f"{old.date().isoformat()}  kept (lake incomplete)" in out, out
    assert "rows 3000, lake 0" in out, out
    assert day in partitions(tc)

    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    lake_rows = ds.dataset(os.path.join(lake, "telemetry"), format="parquet",
                           partitioning="hive").count_rows()
    assert lake_rows == 3000

    out = tc.cmd("retention", extra=ten_days).stdout
    assert f"{old.date().isoformat()}  dropped" in out and "rows 3000, lake 3000" in out, out
    assert day not in partitions(tc)
    assert tc.sql("SELECT count(*) FROM readings WHERE time < %s",
                  (old + timedelta(days=1),))[0][0] == 0


def test_retention_by_age_when_the_lake_is_not_required(plain):
    tc = plain
    tc.migrate()
    today, d15, d12 = _old_day_fixture(tc)
    out = tc.cmd("retention", extra=("retention.max_age_s=864000",
                                     "retention.require_lake=false")).stdout
    after = partitions(tc)
    assert part_name(d15) not in after and part_name(d12) not in after, out
    assert part_name(today - timedelta(days=9)) in after and part_name(today) in after
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2
    # The store still writes into a day retention just dropped (a pipeline that cached it).
    assert "plain mode" in out and "lake required" not in out


def test_rollups_and_views_exact_after_100k(plain):
    tc = plain
    tc.migrate()
    summary = tc.simulate("--devices", "1000", "--count", "100000", "--invalid-ratio", "0.01",
                          "--seed", "42")
    tc.run(idle=3)
    (count,) = tc.sql("SELECT count(*) FROM readings")[0]
    assert count == summary["valid"]
    assert_derived_exact(tc)
    (devices,) = tc.sql("SELECT count(*) FROM latest")[0]
    assert devices == tc.sql("SELECT count(DISTINCT device_id) FROM readings")[0][0]
    # A second run over the same topic adds nothing, to the rollups either.
    tc.run(idle=2)
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == count


@pytest.mark.parametrize("interval_ms", [0, 2500])
def test_rollups_exactly_once_after_kill(plain, interval_ms):
    """kill -9 mid-run, twice, then run to the end: rollups and latest match the raw rows. With a
    rollup interval the kills land between a batch's commit and the rollups' own transaction, so
    the restarted pipeline must give the rollups the rows they lack, and only those."""
    tc = plain
    tc.migrate()
    tc.simulate("--devices", "500", "--count", "60000", "--invalid-ratio", "0.01", "--seed", "9")
    for delay in (1.5, 2.5):
        proc = tc.spawn("run", extra=("pipeline.batch_size=500",
                                      f"postgres.rollup_interval_ms={interval_ms}"))
        time.sleep(delay)  # not synchronisation: where in the run the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    tc.run(idle=3, extra=(f"postgres.rollup_interval_ms={interval_ms}",))
    exp = tc.oracle().expect()
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == exp["valid"]
    assert_derived_exact(tc)


def test_a_stop_retries_the_rollups_on_a_new_connection(plain):
    """A rollups flush that failed on a connection the database closed (a restart) is tried again
    at the next interval -- or at once when a stop comes first: the rollups, and Kafka's committed
    offsets (the lowest of the sinks'), reach the end. The stop gave it up before, and both stayed
    behind the store until the next run."""
    tc = plain
    tc.migrate()
    # Every bucket closed for good: no closing statement to meet the closed connection first (it
    # would log its failure and leave the buckets open, and the flush would reconnect).
    tc.sql("UPDATE rollup_state SET materialized_1m = 'infinity', materialized_1h = 'infinity'")
    tc.simulate("--devices", "50", "--count", "3000", "--seed", "31")
    proc = tc.spawn("run", extra=("pipeline.batch_size=500", "pipeline.batch_size_max=500"))
    log = LogLines(proc.stderr)

    try:
        log.wait('"consuming ', proc=proc)
        wait_for(lambda: tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == 3000, timeout=120,
                 what="rollups of 3000 readings", proc=proc, log=log)
        (closed,) = tc.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                           " WHERE application_name = 'thermocline' AND pid <> pg_backend_pid()")[0]
        assert closed > 0
        tc.simulate("--devices", "50", "--count", "500", "--seed", "32")
        log.wait("rollups retried at the next interval", proc=proc)
        proc.send_signal(signal.SIGTERM)  # before the next interval
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.join()
        proc.stdout.close()
        proc.stderr.close()
    err = log.text()
    assert proc.returncode == 0, err[-6000:]
    tc.assert_clean(err)
    stored = tc.sql("SELECT count(*) FROM readings")[0][0]
    assert 3000 < stored <= 3500
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == stored, err[-6000:]
    assert_derived_exact(tc)
    if stored == 3500:
        assert group_lag(tc, tc.oracle().expect()["ends"]) == 0, err[-6000:]


def test_rollups_off(plain):
    """postgres.rollups=false: rows and latest are written, the rollup tables stay empty."""
    tc = plain
    tc.migrate()
    tc.simulate("--devices", "10", "--count", "500", "--seed", "2")
    tc.run(idle=2, extra=("postgres.rollups=false", "postgres.synchronous_commit=false"))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 500
    assert tc.sql("SELECT count(*) FROM rollup_1m")[0][0] == 0
    assert tc.sql("SELECT count(*) FROM latest")[0][0] == 10
    assert latest_mismatches(tc) == []


def test_mode_cannot_change(plain):
    tc = plain
    tc.migrate()
    proc = tc.cmd("migrate", extra=("postgres.timescaledb=on",), check=False)
    assert proc.returncode != 0
    assert "plain mode" in proc.stderr and "cannot" in proc.stderr, proc.stderr


def test_schema_from_before_the_mode_table_stays_plain(plain):
    """A schema made by release 1 (step 1 only, no store_mode): migrate upgrades it in plain
    mode whatever postgres.timescaledb says in auto, and the pipeline writes into it."""
    tc = plain
    tc.migrate()
    # Release 1 had no api schema either (its views read the ones dropped here).
    execute(tc, f'DROP SCHEMA "{tc.api_schema}" CASCADE')
    execute(tc, "DROP TABLE store_mode; DROP VIEW readings_1m, readings_1h, rollup_1m_live,"
           " rollup_1h_live, latest; DROP TABLE rollup_state, rollup_1m, rollup_1h, latest_state,"
           " lake_files, device_tag_history, rollup_tag_1h, rollup_tag_state, rollup_tag_open;"
           " DROP INDEX readings_time_brin; DELETE FROM schema_migrations WHERE version >= 2;"
           " ALTER TABLE dead_letters DROP COLUMN redriven_at, DROP COLUMN redrive_count")
    # Before the upgrade the pipeline still writes (no rollups yet).
    tc.simulate("--devices", "5", "--count", "50", "--seed", "4")
    tc.run(idle=2, extra=("postgres.timescaledb=auto",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 50
    tc.cmd("migrate", extra=("postgres.timescaledb=auto",))
    assert tc.sql("SELECT mode FROM store_mode") == [("plain",)]
    assert tc.sql("SELECT max(version) FROM schema_migrations") == [(9,)]
    tc.simulate("--devices", "5", "--count", "50", "--seed", "6")
    tc.run(idle=2, extra=("postgres.timescaledb=auto",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 100
    # The first materialization after the upgrade closed the buckets of every stored reading,
    # those stored before the rollups existed included.
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == 100
    assert tc.sql("SELECT materialized_1m > now() - interval '2 minutes' FROM rollup_state")[0][0]
    assert_closed_buckets_exact(tc)
    assert tc.sql("SELECT count(*) FROM latest")[0][0] == 5


def test_views_prune_the_days_before_w_and_h_when_they_start(plain):
    """readings_1m and readings_1h read the open buckets from readings (from W) and rollup_1m
    (from H) through tc_rollup_w() and tc_rollup_h(): stable values when the executor starts, so
    a generic plan prunes the days before them then (a subquery's value came only during the
    run, after every day's scan was set up)."""
    tc = plain
    tc.migrate()
    execute(tc, "UPDATE rollup_state SET materialized_1m = date_trunc('minute', now()),"
           " materialized_1h = date_trunc('hour', now())")
    days = len(partitions(tc))
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # readings_1m: readings' days from W; readings_1h: those and rollup_1m's from H.
        for view, pruned in (("readings_1m", 1), ("readings_1h", 2)):
            conn.execute(f"PREPARE q_{view} (text, timestamptz) AS SELECT count(*) FROM {view}"
                         " WHERE device_id = $1 AND bucket >= $2")
            plan = "\n".join(r[0] for r in conn.execute(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE q_{view}"
                " ('dev-1', now() - interval '30 days')"))
            removed = [int(line.split(":")[1]) for line in plan.splitlines()
                       if "Subplans Removed" in line]
            # Today's and the days ahead are read; every day before W (H) was never set up.
            assert len([n for n in removed if n >= days - 4]) == pruned, (view, days, plan)


def test_rollup_1m_of_version_7_becomes_a_partition(plain):
    """A schema of version 7 whose rollup_1m holds closed minutes: step 8 keeps those rows where
    they are, as rollup_1m_before up to W (its grants, its data, no view still reading it), and
    the minutes closed after it go to the days' partitions; every bucket stays exact."""
    tc = plain
    tc.migrate()
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    tc.simulate("--devices", "20", "--count", "2000", "--cadence-ms", "2000", "--seed", "8",
                "--start", (hour - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:00Z"))
    tc.run(idle=2)
    # rollup_1m as version 7 had it: one table (the api's views, over it, go with the schema).
    # W and H an hour back, still past every row, so that the next readings close after them.
    execute(tc, f'DROP SCHEMA "{tc.api_schema}" CASCADE')
    execute(tc, "DROP VIEW readings_1m, readings_1h, rollup_1m_live, rollup_1h_live;"
           " ALTER TABLE rollup_1m RENAME TO rollup_1m_v8;"
           " CREATE TABLE rollup_1m (LIKE rollup_1m_v8 INCLUDING DEFAULTS) WITH (fillfactor = 70);"
           " INSERT INTO rollup_1m SELECT * FROM rollup_1m_v8; DROP TABLE rollup_1m_v8;"
           " ALTER TABLE rollup_1m ADD PRIMARY KEY (device_id, bucket);"
           " CREATE INDEX rollup_1m_bucket_brin ON rollup_1m USING brin (bucket);"
           " GRANT SELECT ON rollup_1m TO thermocline_viewer;"
           " ALTER TABLE rollup_state DROP COLUMN days_1m_from;"
           " DELETE FROM schema_migrations WHERE version = 8; SELECT tc_ddl_rollup_views()")
    execute(tc, "UPDATE rollup_state SET materialized_1m = %s, materialized_1h = %s",
            (hour - timedelta(hours=1), hour - timedelta(hours=1)))
    (kept, w) = tc.sql("SELECT (SELECT count(*) FROM rollup_1m), materialized_1m FROM rollup_state")[0]
    assert kept > 0
    tc.migrate()
    assert tc.sql("SELECT max(version) FROM schema_migrations") == [(9,)]
    assert tc.sql("SELECT days_1m_from FROM rollup_state") == [(w,)]
    assert tc.sql("SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
                  " WHERE oid = 'rollup_1m_before'::regclass")[0][0] == \
        tc.sql("SELECT format('FOR VALUES FROM (MINVALUE) TO (%%L)', %s::timestamptz)", (w,))[0][0]
    assert tc.sql("SELECT count(*) FROM rollup_1m_before")[0][0] == kept
    assert tc.sql("SELECT has_table_privilege('thermocline_viewer', 'rollup_1m', 'SELECT')")[0][0]
    assert tc.sql("SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
                  " WHERE d.refobjid = 'rollup_1m_before'::regclass")[0][0] == 0
    assert_derived_exact(tc)
    # The day of W starts its partition at W; the minutes closed after it go there.
    tc.simulate("--devices", "20", "--count", "2000", "--cadence-ms", "2000", "--seed", "9",
                "--start", (hour - timedelta(minutes=55)).strftime("%Y-%m-%dT%H:%M:00Z"))
    tc.run(idle=2)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 4000
    assert tc.sql("SELECT count(*) FROM rollup_1m_before")[0][0] == kept
    assert tc.sql("SELECT count(*) FROM rollup_1m WHERE tableoid <> 'rollup_1m_before'::regclass")[0][0] > 0
    assert_derived_exact(tc)


def test_lake_files_date_is_a_day(plain):
    tc = plain
    tc.migrate()
    execute(tc, "INSERT INTO lake_files (path, day, kafka_partition, first_offset, last_offset, rows,"
           " bytes) VALUES ('x', %s, 0, 0, 9, 10, 1000)", (date(2026, 1, 2),))
    assert tc.sql("SELECT day, committed_at IS NOT NULL FROM lake_files") == [
        (date(2026, 1, 2), True)]
