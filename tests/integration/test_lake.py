"""The lake sink: Parquet files readable by pyarrow and DuckDB, partitioned by day, exactly once
across crashes, and catching up on its own when it is behind the store (or the store behind it)."""

import glob
import os
import signal
import time
from decimal import Decimal

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from oracle import METRICS
from test_pipeline import assert_store_matches


def lake_table(root):
    return ds.dataset(os.path.join(root, "telemetry"), format="parquet",
                      partitioning="hive").to_table()


def assert_lake_matches(root, exp, tc=None):
    t = lake_table(root)
    assert t.num_rows == exp["valid"], f"lake holds {t.num_rows} rows, expected {exp['valid']}"
    keys = set(zip(t.column("kafka_partition").to_pylist(), t.column("kafka_offset").to_pylist()))
    assert len(keys) == t.num_rows, "a Kafka message is in the lake twice"
    for m in METRICS:
        values = [v for v in t.column(m).to_pylist() if v is not None]
        assert len(values) == exp["counts"][m], m
        # Shortest round-trip repr of each double is the decimal text the device sent.
        assert sum(Decimal(repr(v)) for v in values) == exp["sums"][m], m
    # DuckDB reads the same table through hive partitioning.
    files = os.path.join(root, "telemetry", "*", "*", "*", "*.parquet")
    (n, devices) = duckdb.sql(
        f"SELECT count(*), count(DISTINCT device_id) FROM read_parquet('{files}', hive_partitioning=true)").fetchall()[0]
    assert n == exp["valid"]
    # No temporary or partial file is visible.
    assert not glob.glob(os.path.join(root, "telemetry", "**", ".*"), recursive=True)
    if tc is not None:
        assert devices == tc.sql("SELECT count(DISTINCT device_id) FROM readings")[0][0]


def test_lake_holds_exactly_the_valid_readings_by_day(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    # Three days of readings: 300 devices every 10 minutes, starting 2.5 days ago.
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2.5 * 86400))
    tc.simulate("--devices", "300", "--count", "100000", "--invalid-ratio", "0.01", "--seed", "11",
                "--start", start, "--cadence-ms", str(600_000))
    tc.run(idle=3, extra=(f"lake.dir={lake}",))
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)

    days = sorted(glob.glob(os.path.join(lake, "telemetry", "year=*", "month=*", "day=*")))
    assert len(days) >= 3
    for d in days:
        y, m, dd = (int(part.split("=")[1]) for part in d.split(os.sep)[-3:])
        for f in glob.glob(os.path.join(d, "*.parquet")):
            t = pq.read_table(f)
            for ts in t.column("time").to_pylist():
                assert (ts.year, ts.month, ts.day) == (y, m, dd), f"{f} holds a reading of {ts}"
            md = pq.ParquetFile(f).metadata
            kv = {k.decode(): v.decode() for k, v in md.metadata.items()}
            assert kv["kafka.topic"] == tc.topic
            name = os.path.basename(f)
            assert name == f"part-{tc.topic}-p{kv['kafka.partition']}-{kv['kafka.first_offset']}-{kv['kafka.last_offset']}.parquet"
            assert md.created_by.startswith("thermocline version")
            assert md.row_group(0).column(0).compression == "SNAPPY"


def test_lake_exactly_once_across_kill_9(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    tc.simulate("--devices", "500", "--count", "60000", "--invalid-ratio", "0.01", "--seed", "12")
    # A short roll interval so that commits happen while the process is being killed.
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    for delay in (1.5, 2.0, 2.5):
        proc = tc.spawn("run", extra=extra)
        time.sleep(delay)  # not synchronisation: where in the run the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    tc.run(idle=3, extra=extra)
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)


def test_lake_catches_up_when_behind_the_store(tc, tmp_path):
    """Lost lake: the store has everything; a run with the lake enabled rebuilds it from Kafka and
    adds nothing to the store."""
    lake = str(tmp_path / "lake")
    tc.migrate()
    tc.simulate("--devices", "200", "--count", "20000", "--invalid-ratio", "0.01", "--seed", "13")
    tc.run(idle=2)
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)


def test_store_catches_up_when_behind_the_lake(tc, tmp_path):
    """Lost database: the lake has everything; after migrate on an empty schema, a run refills the
    store and adds nothing to the lake."""
    lake = str(tmp_path / "lake")
    tc.migrate()
    tc.simulate("--devices", "200", "--count", "20000", "--invalid-ratio", "0.01", "--seed", "14")
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    exp = tc.oracle().expect()
    tc.sql(f'DROP SCHEMA "{tc.schema}" CASCADE')
    tc.migrate()
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)


def test_lake_ls_and_verify(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1.5 * 86400))
    tc.simulate("--devices", "100", "--count", "20000", "--seed", "15", "--start", start,
                "--cadence-ms", str(600_000))
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    import json
    ls = json.loads(tc.cmd("lake", "ls", "--json", extra=(f"lake.dir={lake}",)).stdout)
    assert ls["rows"] == 20000 and ls["bad"] == 0 and len(ls["days"]) >= 2
    assert sum(d["rows"] for d in ls["days"]) == 20000
    ok = tc.cmd("lake", "verify", extra=(f"lake.dir={lake}",))
    assert "0 bad" in ok.stdout

    files = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")))
    # A file truncated by a broken copy is caught...
    with open(files[0], "r+b") as f:
        f.truncate(os.path.getsize(files[0]) - 10)
    # ...and so is a file under a name that does not match its metadata.
    os.rename(files[1], files[1].replace("-p", "-p9"))
    bad = tc.cmd("lake", "verify", extra=(f"lake.dir={lake}",), check=False)
    assert bad.returncode == 1
    assert bad.stdout.count("BAD") == 2, bad.stdout


def test_topics_with_overlapping_names_share_a_lake(tc, tmp_path):
    """Topics `T` and `T-p1-900000` in one lake root: a file of the second,
    part-T-p1-900000-p<P>-<first>-<last>.parquet, once read as partition 1 of `T` from offset
    900000, and T's recovery removed every file of the other topic. Restarting T's pipeline now
    touches none of them, and each topic's files hold its readings exactly."""
    lake = str(tmp_path / "lake")
    other = type(tc)("lake-amb")  # the fixture's class: this module is imported by tests/faults too
    other.topic = f"{tc.topic}-p1-900000"
    try:
        for t, seed in ((other, 31), (tc, 32)):
            t.migrate()
            t.simulate("--devices", "50", "--count", "2000", "--seed", str(seed))
        other.run(idle=2, extra=(f"lake.dir={lake}",))
        theirs = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*",
                                               f"part-{other.topic}-p*.parquet")))
        assert theirs
        before = {f: os.stat(f).st_ino for f in theirs}
        # T's pipeline, twice: its first start recovers every partition with no progress, the
        # restart recovers from its own progress.
        for _ in range(2):
            tc.run(idle=2, extra=(f"lake.dir={lake}",))
            now = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*",
                                                f"part-{other.topic}-p*.parquet")))
            assert now == theirs, f"files of {other.topic} changed: {set(theirs) ^ set(now)}"
            assert {f: os.stat(f).st_ino for f in now} == before
        t = lake_table(lake)
        for topic, n in ((tc.topic, 2000), (other.topic, 2000)):
            files = [f for f in glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet"))
                     if pq.ParquetFile(f).metadata.metadata[b"kafka.topic"].decode() == topic]
            assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == n, topic
        assert t.num_rows == 4000
    finally:
        other.drop()
