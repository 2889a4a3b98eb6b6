"""`thermocline lake compact`: a closed day's many small files merged into one, swapped in
atomically; readers see exactly the same rows before, during and after; open days untouched."""

import collections
import glob
import os
import threading
import time
from decimal import Decimal

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from oracle import METRICS
from waits import wait_for

DAY = 86400


def lake_table(root):
    return ds.dataset(os.path.join(root, "telemetry"), format="parquet",
                      partitioning="hive").to_table()


def snapshot(root):
    """What a reader sees: the multiset of (partition, offset) and the per-metric sums, through
    pyarrow and through DuckDB."""
    t = lake_table(root)
    keys = collections.Counter(zip(t.column("kafka_partition").to_pylist(),
                                   t.column("kafka_offset").to_pylist()))
    sums = {m: sum(Decimal(repr(v)) for v in t.column(m).to_pylist() if v is not None)
            for m in METRICS}
    files = os.path.join(root, "telemetry", "*", "*", "*", "*.parquet")
    # Exact decimal sums: a double sum would depend on the order DuckDB meets the rows in.
    cols = ", ".join(f"count({m}), sum(CAST({m} AS DECIMAL(38, 12)))" for m in METRICS)
    duck = duckdb.sql(f"SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)), {cols} "
                      f"FROM read_parquet('{files}', hive_partitioning=true)").fetchall()[0]
    per_day = collections.Counter(t.column("day").to_pylist())
    return t.num_rows, keys, sums, duck, per_day


def day_dirs(root):
    out = {}
    for d in glob.glob(os.path.join(root, "telemetry", "year=*", "month=*", "day=*")):
        y, m, dd = (int(p.split("=")[1]) for p in d.split(os.sep)[-3:])
        out[(y, m, dd)] = d
    return out


def files_of(d):
    return sorted((f, os.stat(os.path.join(d, f)).st_mtime_ns) for f in os.listdir(d))


def test_lake_compact_closed_days(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    # 200 devices every 15 minutes for 3.125 days ending about 1.8 hours ago: four or five days.
    now = time.time()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3.2 * DAY))
    tc.simulate("--devices", "200", "--count", "60000", "--invalid-ratio", "0.01", "--seed", "21",
                "--start", start, "--cadence-ms", str(900_000))
    # And readings of today (UTC): in the first two hours of a day the backfill ends yesterday.
    tc.simulate("--devices", "20", "--count", "20", "--seed", "22")
    today = time.gmtime(time.time())
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    tc.run(idle=2, extra=extra)

    today_key = (today.tm_year, today.tm_mon, today.tm_mday)
    days = day_dirs(lake)
    assert len(days) >= 4 and today_key in days
    closed = {k: d for k, d in days.items() if k != today_key}
    for d in closed.values():
        assert len([f for f in os.listdir(d) if f.startswith("part-")]) > 1, "want small files"
    open_before = files_of(days[today_key])
    before = snapshot(lake)
    assert before[0] > 50000 and sum(before[1].values()) == before[0]
    assert max(before[1].values()) == 1, "a Kafka message is in the lake twice"

    # Today is never closed without --force.
    y, m, d = today_key
    proc = tc.cmd("lake", "compact", "--day", f"{y:04d}-{m:02d}-{d:02d}", extra=extra, check=False)
    assert proc.returncode == 1 and "is not closed" in proc.stdout

    # A dry run changes nothing.
    listing = {k: files_of(v) for k, v in days.items()}
    proc = tc.cmd("lake", "compact", "--all-closed", "--min-age-days", "1", "--dry-run",
                  extra=extra)
    assert proc.stdout.count("PLAN ") == len(closed), proc.stdout
    assert {k: files_of(v) for k, v in day_dirs(lake).items()} == listing

    # Compact while a reader keeps listing and reading the whole lake.
    seen, errors, stop = [], [], threading.Event()

    glob_all = os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")

    def reader():
        k = 0
        while not stop.is_set():
            k += 1
            try:
                if k % 2:
                    seen.append(lake_table(lake).num_rows)
                else:
                    seen.append(duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob_all}', "
                                           "hive_partitioning=true)").fetchall()[0][0])
            except (FileNotFoundError, duckdb.IOException) as e:
                # The swap can remove a file a reader listed but had not opened yet; what it
                # never does is show a partial or a doubled day.
                assert isinstance(e, FileNotFoundError) or "No such file" in str(e), e
                errors.append(repr(e))

    th = threading.Thread(target=reader)
    th.start()
    try:
        # Reads before the compaction, and reads after it: counted passes, not time.
        wait_for(lambda: seen or errors, what="the reader's first pass")
        proc = tc.cmd("lake", "compact", "--all-closed", "--min-age-days", "1", extra=extra)
        passes = len(seen) + len(errors)
        wait_for(lambda: len(seen) + len(errors) >= passes + 2, what="two reads after the compaction")
    finally:
        stop.set()
        th.join()
    assert proc.stdout.count("DONE ") == len(closed), proc.stdout
    print(f"reader: {len(seen)} reads, {len(errors)} errors")
    assert seen, f"the reader never completed a read: {errors[:3]}"
    assert set(seen) == {before[0]}, f"a reader saw {sorted(set(seen))}, not {before[0]}"

    # Each closed day is one compacted file with its coordinates; today is untouched.
    after_days = day_dirs(lake)
    assert set(after_days) == set(days)
    assert files_of(after_days[today_key]) == open_before
    for (y, m, d), path in closed.items():
        names = os.listdir(path)
        assert len(names) == 1 and names[0].startswith(f"compact-{y:04d}{m:02d}{d:02d}-1-"), names
        md = pq.ParquetFile(os.path.join(path, names[0])).metadata
        kv = {k.decode(): v.decode() for k, v in md.metadata.items()}
        assert kv["kafka.topic"] == tc.topic
        assert int(kv["thermocline.rows"]) == md.num_rows
        assert int(kv["thermocline.compacted_files"]) > 1
        t = pq.read_table(os.path.join(path, names[0]), columns=["kafka_partition", "kafka_offset"])
        ranges = dict((int(p), tuple(map(int, r.split("-"))))
                      for p, r in (x.split(":") for x in kv["kafka.partitions"].split(",")))
        for p, o in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
            assert ranges[p][0] <= o <= ranges[p][1]
    assert not glob.glob(os.path.join(lake, "telemetry", "**", ".*"), recursive=True)

    after = snapshot(lake)
    assert after[0] == before[0]
    assert after[1] == before[1], "the (partition, offset) multiset changed"
    assert after[2] == before[2], "per-metric sums changed"
    assert after[3] == before[3], "DuckDB sees different rows"
    assert after[4] == before[4], "rows moved between days"

    proc = tc.cmd("lake", "verify", extra=extra)
    assert "0 bad" in proc.stdout and proc.stdout.count("/compact-") == len(closed), proc.stdout

    # A second run has nothing to do.
    proc = tc.cmd("lake", "compact", "--all-closed", "--min-age-days", "1", extra=extra)
    assert proc.stdout.count("already compacted") == len(closed), proc.stdout

    # A temporary file (a commit in progress) makes compaction refuse the day.
    (y, m, d), path = sorted(closed.items())[0]
    tmp = os.path.join(path, f".part-{tc.topic}-p0-999999-open.tmp")
    open(tmp, "wb").close()
    proc = tc.cmd("lake", "compact", "--day", f"{y:04d}-{m:02d}-{d:02d}", extra=extra, check=False)
    assert proc.returncode == 1 and "temporary file" in proc.stdout, proc.stdout
    assert os.path.exists(tmp) and len(os.listdir(path)) == 2
    os.unlink(tmp)

    # A part file whose commit has not reached its partition's progress (a crash between rename
    # and progress; recovery will delete it) makes compaction refuse the day.
    src = sorted(f for f in os.listdir(after_days[today_key]) if f.startswith("part-"))[0]
    kv = {k.decode(): v.decode() for k, v in
          pq.ParquetFile(os.path.join(after_days[today_key], src)).metadata.metadata.items()}
    progress = os.path.join(lake, "_thermocline", "progress", tc.topic, kv["kafka.partition"])
    with open(progress) as f:
        saved = f.read()
    copy = os.path.join(path, src)
    with open(os.path.join(after_days[today_key], src), "rb") as f, open(copy, "wb") as g:
        g.write(f.read())
    with open(progress, "w") as f:
        f.write(kv["kafka.first_offset"])
    try:
        proc = tc.cmd("lake", "compact", "--day", f"{y:04d}-{m:02d}-{d:02d}", extra=extra,
                      check=False)
        assert proc.returncode == 1 and "has not reached the progress" in proc.stdout, proc.stdout
        assert len(os.listdir(path)) == 2
    finally:
        with open(progress, "w") as f:
            f.write(saved)
        os.unlink(copy)


def test_lake_compact_reads_files_of_other_writers(tc, tmp_path):
    """Files written by pyarrow (data pages v1 and v2, dictionary on and off, zstd and snappy) are
    read back by our reader and compacted value for value; a column only some files have (a newer
    optional metric) is NULL in the rows of the others."""
    import datetime

    import pyarrow as pa

    lake = str(tmp_path / "lake")
    day = datetime.date.today() - datetime.timedelta(days=5)
    d = os.path.join(lake, "telemetry", f"year={day.year:04d}", f"month={day.month:02d}",
                     f"day={day.day:02d}")
    os.makedirs(d)
    os.makedirs(os.path.join(lake, "_thermocline", "progress", "pyarrow"))
    with open(os.path.join(lake, "_thermocline", "progress", "pyarrow", "0"), "w") as f:
        f.write("100000")
    schema = pa.schema(
        [pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
         pa.field("device_id", pa.string(), nullable=False)]
        + [pa.field(m, pa.float64()) for m in METRICS]
        + [pa.field("tags", pa.string()), pa.field("extra", pa.string()),
           pa.field("kafka_partition", pa.int32(), nullable=False),
           pa.field("kafka_offset", pa.int64(), nullable=False)])
    midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc)
    tables = []
    for k, (version, dictionary, codec) in enumerate(
            [("2.0", True, "zstd"), ("1.0", False, "snappy"), ("2.0", False, "none")]):
        n, first = 3000 + 517 * k, 10000 * k
        cols = {"time": [midnight + datetime.timedelta(seconds=7 * i + k) for i in range(n)],
                "device_id": [f"dev-{i % 37}" for i in range(n)]}
        for j, m in enumerate(METRICS):
            cols[m] = [None if (i + j) % 7 == 0 else (i * 0.25 - j) for i in range(n)]
        cols["tags"] = [None if i % 3 else f'{{"k":{i % 5}}}' for i in range(n)]
        cols["extra"] = [None] * n
        cols["kafka_partition"] = [0] * n
        cols["kafka_offset"] = [first + i for i in range(n)]
        sch = schema
        if k == 1:
            cols["co2"] = [float(i) for i in range(n)]
            sch = schema.append(pa.field("co2", pa.float64()))
        t = pa.table(cols, schema=sch).replace_schema_metadata({
            "kafka.topic": "pyarrow", "kafka.partition": "0", "kafka.first_offset": str(first),
            "kafka.last_offset": str(first + n - 1)})
        pq.write_table(t, os.path.join(d, f"part-pyarrow-p0-{first}-{first + n - 1}.parquet"),
                       data_page_version=version, use_dictionary=dictionary, compression=codec,
                       row_group_size=1000, data_page_size=4096)
        tables.append(t)
    extra = (f"lake.dir={lake}",)
    tc.cmd("lake", "compact", "--day", day.isoformat(), extra=extra)
    names = os.listdir(d)
    assert len(names) == 1 and names[0].startswith("compact-")
    got = pq.read_table(os.path.join(d, names[0]))
    want = pa.concat_tables(tables, promote_options="default")
    assert got.num_rows == want.num_rows
    assert got.schema.names == schema.names + ["co2"]
    for name in schema.names + ["co2"]:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    kv = {k.decode(): v.decode() for k, v in pq.ParquetFile(os.path.join(d, names[0]))
          .metadata.metadata.items()}
    assert kv["kafka.partitions"] == f"0:0-{20000 + 3000 + 2 * 517 - 1}"
    proc = tc.cmd("lake", "verify", extra=extra)
    assert "0 bad" in proc.stdout, proc.stdout
