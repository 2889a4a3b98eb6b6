"""Schema evolution while the pipeline runs: a metric that appears later in the stream becomes a
column of telemetry.readings (ALTER TABLE, online) and an OPTIONAL column of the lake files written
from then on; earlier files stay as they are, and readers see one table across all files. In plain
mode the metric also gets columns in the rollup tables and the views over them."""

import glob
import json
import os
import signal
import time
from decimal import Decimal

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from confluent_kafka import Producer

from oracle import METRICS
from test_store import (  # noqa: F401 (plain: a fixture)
    latest_mismatches, plain, rollup_mismatches, view_mismatches)

from waits import wait_for as _wait_for


def wait_for(pred, timeout=90):
    return _wait_for(pred, timeout=timeout)


def test_new_metric_becomes_a_column_in_both_stores(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    tc.simulate("--devices", "50", "--count", "2000", "--seed", "31")  # creates the topic: v1 only
    proc = tc.spawn("run", extra=(f"lake.dir={lake}", "lake.roll_seconds=1"))
    try:
        count = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
        assert wait_for(lambda: count() == 2000)
        assert wait_for(lambda: glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")))

        # Version 2 readings carry co2 (a new metric) and firmware (a new non-numeric field),
        # interleaved with version 1 readings that still arrive.
        p = Producer({"bootstrap.servers": tc.brokers})
        now_ms = int(time.time() * 1000)
        co2_sum = Decimal(0)
        for i in range(3000):
            doc = {"device_id": f"dev-{i % 40}", "timestamp": now_ms - i, "temperature": 20.25}
            if i % 3:
                doc["co2"] = 400 + i % 97 + 0.5
                doc["firmware"] = f"2.{i % 5}"
                co2_sum += Decimal(repr(doc["co2"]))
            p.produce(tc.topic, json.dumps(doc).encode(), key=doc["device_id"].encode())
        assert p.flush(30) == 0
        assert wait_for(lambda: count() == 5000)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert '"new metric \\"co2\\" becomes a column' in err

    # PostgreSQL: a real column, NULL where a reading lacked it; the reading keeps it in extra too.
    cols = {r[0]: r[1] for r in tc.sql(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'readings'")}
    assert cols["co2"] == "double precision" and "firmware" not in cols
    (n, total) = tc.sql("SELECT count(co2), sum(co2::numeric) FROM readings")[0]
    assert n == 2000 and Decimal(total) == co2_sum
    assert tc.sql("SELECT count(*) FROM readings WHERE (extra->>'co2')::float8 = co2")[0][0] == 2000
    assert tc.sql("SELECT count(*) FROM readings WHERE extra->>'firmware' IS NOT NULL")[0][0] == 2000

    # The lake: files from before the metric lack the column, files after have it.
    files = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")))
    with_co2 = [f for f in files if "co2" in pq.read_schema(f).names]
    assert with_co2 and len(with_co2) < len(files)
    for f in with_co2:
        field = pq.read_schema(f).field("co2")
        assert field.type == pa.float64() and field.nullable
    unified = pa.unify_schemas([pq.read_schema(f) for f in files])
    t = ds.dataset(files, format="parquet", schema=unified).to_table()
    assert t.num_rows == 5000
    co2 = [v for v in t.column("co2").to_pylist() if v is not None]
    assert len(co2) == 2000 and sum(Decimal(repr(v)) for v in co2) == co2_sum
    pattern = os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")
    (rows, n_co2) = duckdb.sql(
        f"SELECT count(*), count(co2) FROM read_parquet('{pattern}', union_by_name=true)").fetchall()[0]
    assert (rows, n_co2) == (5000, 2000)
    ok = tc.cmd("lake", "verify", extra=(f"lake.dir={lake}",))
    assert " 0 bad" in ok.stdout


def columns(tc, table):
    return {r[0]: r[1] for r in tc.sql(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s", (table,))}


def ordered_columns(tc, table):
    return [r[0] for r in tc.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s ORDER BY ordinal_position", (table,))]


def close_every_bucket(tc):
    """Every bucket closed for good (rollup_state at infinity): every group the pipeline
    aggregates goes through the rollups' upserts, whose row types these tests are about (the
    default leaves recent buckets open, to be closed set-based: test_rollup_close.py)."""
    tc.sql("UPDATE rollup_state SET materialized_1m = 'infinity', materialized_1h = 'infinity'")


def rollups_caught_up(tc, metrics):
    """Every stored reading, and every value of the metrics, is in both rollup tables."""
    counts = ", ".join(f"count({m})" for m in metrics)
    try:
        want = tc.sql(f"SELECT count(*), {counts} FROM readings")[0]
        for table in ("rollup_1m", "rollup_1h"):
            sums = ", ".join(f"sum({m}_n)" for m in metrics)
            if tc.sql(f"SELECT sum(n), {sums} FROM {table}")[0] != want:
                return False
    except psycopg.errors.UndefinedColumn:
        return False  # the rollups have not reached the metric yet
    return True


def produce(tc, docs):
    p = Producer({"bootstrap.servers": tc.brokers})
    for doc in docs:
        p.produce(tc.topic, json.dumps(doc).encode(), key=doc["device_id"].encode())
    assert p.flush(30) == 0


# 60 bytes: a column of readings, but "<name>_sum" would not fit PostgreSQL's 63-byte identifiers.
LONG = ("humidity_of_the_second_sensor_on_the_board_" * 2)[:60]


def test_new_metrics_reach_the_plain_rollups_and_views(plain):
    """New metrics arriving while the pipeline runs get rollup columns (rollup_1m, rollup_1h) and
    view columns (readings_1m, readings_1h) appended online, and every bucket equals the raw
    readings' aggregates, for the new metrics and an old one; a second new metric later (the
    prepared upserts widen again), and a restart that meets the columns already there."""
    tc = plain
    tc.migrate()
    assert tc.sql("SELECT mode FROM store_mode") == [("plain",)]
    close_every_bucket(tc)
    view_before = ordered_columns(tc, "readings_1m")
    tc.simulate("--devices", "40", "--count", "2000", "--seed", "17")  # v1 readings, last minutes
    proc = tc.spawn("run", extra=("pipeline.batch_timeout_ms=200",))
    now_ms = int(time.time() * 1000)
    co2 = lambda i: 400 + i % 97 + 0.5 if i % 3 else None
    try:
        count = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
        assert wait_for(lambda: count() == 2000)
        assert wait_for(lambda: rollups_caught_up(tc, ["temperature"]))
        assert "co2_n" not in columns(tc, "rollup_1m")
        old_buckets = {table: set(tc.sql(f"SELECT device_id, bucket FROM {table}"))
                       for table in ("rollup_1m", "rollup_1h")}

        # co2 (and a metric too long for rollup columns) for the simulator's devices, over the last
        # 2.5 hours: buckets made before the columns existed gain co2 there.
        docs = []
        for i in range(3000):
            doc = {"device_id": f"sensor-{i % 40:05d}", "timestamp": now_ms - i * 3000,
                   "temperature": 15 + (i % 40) * 0.25}
            if co2(i) is not None:
                doc["co2"] = co2(i)
            if i % 5 == 0:
                doc[LONG] = i * 0.5
            docs.append(doc)
        produce(tc, docs)
        assert wait_for(lambda: count() == 5000)
        assert wait_for(lambda: rollups_caught_up(tc, ["temperature", "co2"]))

        # Another metric later: the rollups' statements are prepared again, wider.
        produce(tc, [{"device_id": f"sensor-{i % 40:05d}", "timestamp": now_ms - i * 7000 - 500,
                      "humidity": 40 + i % 11, "pm25": (i % 13) * 1.25,
                      **({"co2": 512.5} if i % 2 else {})} for i in range(600)])
        assert wait_for(lambda: count() == 5600)
        assert wait_for(lambda: rollups_caught_up(tc, ["temperature", "co2", "pm25"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    for m in ("co2", "pm25"):
        for table, view in (("rollup_1m", "readings_1m"), ("rollup_1h", "readings_1h")):
            assert f'{table} and {view} have columns for the metric \\"{m}\\"' in err, err[-3000:]
    assert f'metric \\"{LONG}\\" gets no rollup columns' in err, err[-3000:]

    # The tables: four columns per new metric, like the fixed metrics'; none for the long name.
    for table in ("rollup_1m", "rollup_1h"):
        cols = columns(tc, table)
        for m in ("co2", "pm25"):
            assert cols[f"{m}_n"] == "bigint"
            assert cols[f"{m}_sum"] == cols[f"{m}_min"] == cols[f"{m}_max"] == "double precision"
        assert not [c for c in cols if c.startswith(LONG[:40])], cols
    assert columns(tc, "readings")[LONG] == "double precision"

    # The views: the columns they had, then the new metrics' in the order they appeared.
    for view in ("readings_1m", "readings_1h"):
        cols = ordered_columns(tc, view)
        assert cols[:len(view_before)] == view_before
        assert cols[len(view_before):] == [
            f"{m}_{s}" for m in ("co2", "pm25") for s in ("avg", "min", "max", "n")]
        assert columns(tc, view)["co2_n"] == "bigint"

    metrics = [*METRICS, "co2", "pm25"]
    (n_co2,) = tc.sql("SELECT count(co2) FROM readings")[0]
    assert n_co2 == 2000 + 300
    # Rows the rollups wrote before the columns existed (0 by default) gained co2 by the upsert.
    for table in ("rollup_1m", "rollup_1h"):
        with_co2 = set(tc.sql(f"SELECT device_id, bucket FROM {table} WHERE co2_n > 0"))
        assert with_co2 & old_buckets[table], table

    def exact():
        assert rollup_mismatches(tc, "rollup_1m", "1 minute", metrics) == []
        assert rollup_mismatches(tc, "rollup_1h", "1 hour", metrics) == []
        assert view_mismatches(tc, "readings_1m", "1 minute", metrics) == []
        assert view_mismatches(tc, "readings_1h", "1 hour", metrics) == []

    exact()

    # A restart: the new run does not know the columns exist; it meets them (IF NOT EXISTS), defines
    # the views again with the same columns plus one more metric, and adds to the same buckets.
    produce(tc, [{"device_id": f"sensor-{i % 40:05d}", "timestamp": now_ms - i * 11000 - 250,
                  "co2": 450.25 + i, **({"o3": i * 0.125} if i % 4 else {})} for i in range(400)])
    tc.run(idle=3, extra=("pipeline.batch_timeout_ms=200",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 6000
    for view in ("readings_1m", "readings_1h"):
        cols = ordered_columns(tc, view)
        assert cols[len(view_before):] == [
            f"{m}_{s}" for m in ("co2", "pm25", "o3") for s in ("avg", "min", "max", "n")]
    metrics.append("o3")
    assert rollups_caught_up(tc, metrics)
    exact()

    # A replay recomputes the buckets of its range from the raw rows, new metrics included: before
    # it knew only the fixed ones, and the new metrics' columns of those buckets went back to 0.
    out = tc.cmd("replay", "--from-offset", "0:0").stdout
    assert "partition 0: replayed offsets 0-" in out, out
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 6000
    assert tc.sql("SELECT sum(co2_n) FROM rollup_1h")[0][0] == tc.sql(
        "SELECT count(co2) FROM readings")[0][0]
    exact()


def test_rollup_columns_added_by_another_pipeline(plain):
    """Another pipeline of the group adds a metric's rollup columns while this one runs (and an
    operator a column to latest_state): the row types its upserts send no longer match (SQLSTATE
    42804). It reads the columns again and retries; the rollups and the latest state stay exact,
    the other metric's columns 0 or NULL where it had no values."""
    tc = plain
    tc.migrate()
    close_every_bucket(tc)
    tc.simulate("--devices", "40", "--count", "2000", "--seed", "17")
    proc = tc.spawn("run", extra=("pipeline.batch_timeout_ms=200",))
    count = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
    try:
        assert wait_for(lambda: count() == 2000)
        assert wait_for(lambda: rollups_caught_up(tc, ["temperature"]))
        for table in ("rollup_1m", "rollup_1h"):
            tc.sql(f'ALTER TABLE {table} ADD COLUMN "other_n" bigint NOT NULL DEFAULT 0,'
                   ' ADD COLUMN "other_sum" double precision NOT NULL DEFAULT 0,'
                   ' ADD COLUMN "other_min" double precision,'
                   ' ADD COLUMN "other_max" double precision')
        tc.sql("ALTER TABLE latest_state ADD COLUMN note text")
        tc.simulate("--devices", "40", "--count", "2000", "--seed", "18")
        assert wait_for(lambda: count() == 4000)
        assert wait_for(lambda: rollups_caught_up(tc, ["temperature"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert "rollups retried" in err, err[-3000:]
    for table, width in (("rollup_1m", "1 minute"), ("rollup_1h", "1 hour")):
        assert rollup_mismatches(tc, table, width) == []
        assert tc.sql(f"SELECT sum(other_n), sum(other_sum), count(other_min), count(other_max)"
                      f" FROM {table}") == [(0, 0.0, 0, 0)]
    assert latest_mismatches(tc) == []
    assert tc.sql("SELECT count(*), count(note) FROM latest_state") == [(40, 0)]
