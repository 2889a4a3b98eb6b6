"""Schema evolution while the pipeline runs: a metric that appears later in the stream becomes a
column of telemetry.readings (ALTER TABLE, online) and an OPTIONAL column of the lake files written
from then on; earlier files stay as they are, and readers see one table across all files."""

import glob
import json
import os
import signal
import time
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from confluent_kafka import Producer


def wait_for(pred, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


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
