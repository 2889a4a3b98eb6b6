"""thermocline export: every exported row against the store and the lake, in each format and
compression; filters; the public profile's masking against PostgreSQL's own rounding; scheduled
exports whole or absent across kill -9, completed by the next pass, and late data re-exported."""

import csv
import gzip
import hashlib
import io
import json
import os
import re
import signal
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from api_data import as_role
from oracle import METRICS
from waits import LogLines, stop_process, wait_for

DAY = 86400


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def lake_rows(lake, frm, to):
    t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet",
                   partitioning="hive").to_table()
    rows = []
    for r in t.to_pylist():
        if frm <= r["time"] < to:
            rows.append(r)
    return rows


def text_of(path, data):
    """A CSV or NDJSON file's text, decompressed as its extension says."""
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zst"):
        data = pa.CompressedInputStream(pa.BufferReader(data), "zstd").read()
    return data.decode("utf-8")


def read_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def num(v):
    """A text field as the Decimal of its shortest round-trip double (None for empty/null)."""
    if v is None or v == "":
        return None
    return Decimal(repr(float(v)))


def read_export(out):
    """The rows of an export directory, whatever its format, as dicts; checks the manifest."""
    man = json.loads(read_bytes(os.path.join(out, "manifest.json")))
    names = sorted(f for f in os.listdir(out) if f != "manifest.json")
    assert names == sorted(f["path"] for f in man["files"]), "manifest and directory differ"
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith("." + os.path.basename(out))]
    rows = []
    for f in man["files"]:
        path = os.path.join(out, f["path"])
        data = read_bytes(path)
        assert hashlib.sha256(data).hexdigest() == f["sha256"], path
        assert len(data) == f["bytes"]
        n0 = len(rows)
        fmt = man["parameters"]["format"]
        if fmt == "parquet":
            for r in pq.read_table(path).to_pylist():
                r["time"] = r["time"].astimezone(timezone.utc)
                rows.append(r)
        elif fmt == "csv":
            text = text_of(path, data)
            assert text.startswith("time,device_id,") and text.endswith("\r\n")
            rows += list(csv.DictReader(io.StringIO(text, newline="")))
        else:
            rows += [json.loads(line) for line in text_of(path, data).splitlines()]
        assert len(rows) - n0 == f["rows"], path
    assert man["rows"] == len(rows)
    assert len(man["lake_digest"]) == 64
    assert sum(f["rows"] for f in man["lake_files"]) >= len(rows)
    return man, rows


def summary(rows, metrics=METRICS):
    """count, exact sums per metric, set of keys."""
    sums = {m: Decimal(0) for m in metrics}
    counts = {m: 0 for m in metrics}
    keys = set()
    for r in rows:
        keys.add((int(r["kafka_partition"]), int(r["kafka_offset"])))
        for m in metrics:
            v = r.get(m)
            if v is not None and v != "":
                sums[m] += num(v)
                counts[m] += 1
    return len(rows), counts, sums, keys


def store_summary(tc, frm, to, where="", metrics=METRICS, select=None):
    cols = select or {m: m for m in metrics}
    q = ", ".join(f"{expr}::text" for expr in cols.values())
    rows = tc.sql(f"SELECT kafka_partition, kafka_offset, {q} FROM readings"
                  f" WHERE time >= %s AND time < %s {where}", (frm, to))
    out = [dict(kafka_partition=r[0], kafka_offset=r[1],
                **{m: r[2 + i] for i, m in enumerate(cols)}) for r in rows]
    return summary(out, list(cols))


def populate(tc, lake, days=2.5, count=6000, devices=100, seed=31):
    tc.migrate()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days)
    cadence = int(days * DAY * 1000 / (count / devices))
    tc.simulate("--devices", str(devices), "--count", str(count), "--invalid-ratio", "0.01",
                "--seed", str(seed), "--start", iso(start), "--cadence-ms", str(cadence))
    tc.run(idle=3, extra=(f"lake.dir={lake}", "lake.roll_seconds=1"))
    return start


def export(tc, lake, out, *args, extra=()):
    return tc.cmd("export", "--out", out, *args, extra=(f"lake.dir={lake}", *extra))


def test_export_every_format_matches_store_and_lake(tc, tmp_path):
    lake = str(tmp_path / "lake")
    start = populate(tc, lake)
    # A range across a day boundary, cutting days in the middle (pruning and the time filter).
    frm, to = start + timedelta(hours=7), start + timedelta(hours=40)
    want = store_summary(tc, frm, to)
    assert want[0] > 1000
    assert summary(lake_rows(lake, frm, to)) == want
    tags = {(p, o): t for p, o, t in tc.sql(
        "SELECT kafka_partition, kafka_offset, tags FROM readings WHERE time >= %s AND time < %s",
        (frm, to))}
    variants = [("parquet", None), ("parquet", "zstd"), ("csv", None), ("csv", "gzip"),
                ("csv", "zstd"), ("ndjson", None), ("ndjson", "gzip"), ("ndjson", "zstd")]
    for fmt, comp in variants:
        out = str(tmp_path / f"out-{fmt}-{comp}")
        args = ["--from", iso(frm), "--to", iso(to), "--format", fmt]
        if comp:
            args += ["--compress", comp]
        export(tc, lake, out, *args)
        man, rows = read_export(out)
        assert summary(rows) == want, (fmt, comp)
        # tags (JSON text with quotes and commas) survive CSV quoting and JSON escaping
        assert {(int(r["kafka_partition"]), int(r["kafka_offset"])): json.loads(r["tags"])
                for r in rows} == tags, (fmt, comp)
        assert man["parameters"]["format"] == fmt
        assert len(man["files"]) >= 2, "one file per day of the range"
        for r in rows:
            t = r["time"] if fmt == "parquet" else datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
            assert frm <= t < to
        if fmt == "parquet":
            f = pq.ParquetFile(os.path.join(out, man["files"][0]["path"]))
            assert f.metadata.row_group(0).column(0).compression == ("ZSTD" if comp else "SNAPPY")
    # DuckDB reads the plain and the gzip CSV (and the Parquet) with the same counts and sums.
    for sub, reader in (("out-csv-None", "read_csv_auto"), ("out-csv-gzip", "read_csv_auto"),
                        ("out-parquet-None", "read_parquet")):
        files = os.path.join(str(tmp_path), sub, "part-*")
        n, temp = duckdb.sql(f"SELECT count(*), sum(temperature)::DOUBLE FROM {reader}('{files}')").fetchall()[0]
        assert n == want[0]
        assert abs(Decimal(repr(temp)) - want[2]["temperature"]) < Decimal("1e-6") * max(1, abs(want[2]["temperature"]))
    # A rerun to the same place replaces the export whole, with the same rows -- also from
    # compacted files (their offsets from the footer), under another lake digest.
    before = read_export(str(tmp_path / "out-parquet-None"))[0]
    tc.cmd("lake", "compact", "--all-closed", "--min-age-days", "1", extra=(f"lake.dir={lake}",))
    out = str(tmp_path / "out-parquet-None")
    export(tc, lake, out, "--from", iso(frm), "--to", iso(to), "--format", "parquet")
    man, rows = read_export(out)
    assert summary(rows) == want
    compacted = [f for f in man["lake_files"] if "/compact-" in f["path"]]
    assert compacted and all(re.fullmatch(r"\d+:\d+-\d+(,\d+:\d+-\d+)*", f["kafka_offsets"])
                             for f in compacted)
    assert man["lake_digest"] != before["lake_digest"]


def test_export_filters_and_public_profile(tc, tmp_path):
    lake = str(tmp_path / "lake")
    start = populate(tc, lake, days=1.5, count=3000, devices=50, seed=32)
    frm, to = start, start + timedelta(days=2)
    out = str(tmp_path / "f")
    export(tc, lake, out, "--from", iso(frm), "--to", iso(to), "--format", "ndjson",
           "--devices", "sensor-0000[0-9]", "--tags", "site=paris-2",
           "--metrics", "temperature,latitude")
    man, rows = read_export(out)
    where = "AND device_id ~ '^sensor-0000[0-9]$' AND tags->>'site' = 'paris-2'"
    want = store_summary(tc, frm, to, where, metrics=["temperature", "latitude"])
    assert want[0] > 0
    assert summary(rows, ["temperature", "latitude"]) == want
    assert set(rows[0]) == {"time", "device_id", "temperature", "latitude", "tags",
                            "kafka_partition", "kafka_offset"}
    assert all(json.loads(r["tags"])["site"] == "paris-2" for r in rows)
    # public: the personal columns (latitude, longitude) as PostgreSQL's round(v::numeric, 2)
    # gives them -- the api's rule -- and the others exact.
    out = str(tmp_path / "p")
    export(tc, lake, out, "--from", iso(frm), "--to", iso(to), "--format", "csv",
           "--profile", "public")
    man, rows = read_export(out)
    assert [c["name"] for c in man["schema"] if c["masked"]] == ["latitude", "longitude"]
    select = {m: m for m in METRICS}
    select["latitude"] = "round(latitude::numeric, 2)::double precision"
    select["longitude"] = "round(longitude::numeric, 2)::double precision"
    assert summary(rows) == store_summary(tc, frm, to, select=select)
    assert any(r["latitude"] and len(r["latitude"].split(".")[-1]) <= 2 for r in rows)
    # ... and what thermocline_viewer reads through the api schema, value for value.
    with as_role(tc, "thermocline_viewer", json.dumps({"sub": "bi", "sites": "*"})) as conn:
        view = {(d, t): (la, lo) for d, t, la, lo in conn.execute(
            f'SELECT device_id, time, latitude, longitude FROM "{tc.api_schema}".readings_raw'
            " WHERE time >= %s AND time < %s", (frm, to)).fetchall()}
    exported = {(r["device_id"], datetime.fromisoformat(r["time"].replace("Z", "+00:00"))):
                (float(r["latitude"]) if r["latitude"] else None,
                 float(r["longitude"]) if r["longitude"] else None) for r in rows}
    assert exported == view
    # hide: NULL for the viewer's profile.
    out = str(tmp_path / "h")
    export(tc, lake, out, "--from", iso(frm), "--to", iso(to), "--format", "csv",
           "--profile", "public", extra=("api.personal_viewer=hide",))
    rows = read_export(out)[1]
    assert rows and all(r["latitude"] == "" and r["longitude"] == "" for r in rows)
    assert all(r["temperature"] != "" for r in rows[:50])
    # Refusals name what is wrong.
    bad = tc.cmd("export", "--out", str(tmp_path / "x"), "--from", iso(frm), "--to", iso(to),
                 "--format", "parquet", "--compress", "gzip", extra=(f"lake.dir={lake}",),
                 check=False)
    assert bad.returncode == 2 and "gzip" in bad.stderr
    assert not os.path.exists(str(tmp_path / "x"))
    # An --out that is a directory of other files is not replaced (nor its files deleted).
    keep = tmp_path / "home"
    keep.mkdir()
    (keep / "thesis.txt").write_text("years of work")
    bad = tc.cmd("export", "--out", str(keep), "--from", iso(frm), "--to", iso(to),
                 "--format", "csv", extra=(f"lake.dir={lake}",), check=False)
    assert bad.returncode == 1 and "not an export" in bad.stderr
    assert (keep / "thesis.txt").read_text() == "years of work"
    assert sorted(os.listdir(str(tmp_path))) == sorted(["lake", "f", "p", "h", "home"])


def periods(out):
    return sorted(d for d in os.listdir(out) if not d.startswith("."))


def assert_whole(out):
    """Every period directory visible is whole: its manifest, its files, their checksums."""
    for d in periods(out):
        read_export(os.path.join(out, d))


def test_scheduled_exports_kill_9_and_late_data(tc, tmp_path):
    lake = str(tmp_path / "lake")
    out = str(tmp_path / "sched")
    start = populate(tc, lake, days=1.5, count=12000, devices=100, seed=33)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    spec = (f"name=hourly schedule=hourly tz=Europe/Paris format=csv compress=gzip "
            f"lookback=40 out={out}")
    extra = (f"lake.dir={lake}", f"export.schedules={spec}")
    # kill -9 while a period is being written (its temporary directory exists), three times:
    # each period visible after is whole, the one being written is absent.
    mid = 0
    for _ in range(3):
        proc = tc.spawn("export", "--scheduled", "--once", "--now", iso(now), extra=extra)
        writing = wait_for(lambda: proc.poll() is not None or (os.path.isdir(out) and [
            d for d in os.listdir(out) if d.startswith(".")]), timeout=120,
            what="a period being written", interval=0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if writing is not True:
            mid += 1
            period = writing[0].split(".")[1]
            assert period not in periods(out) or read_export(os.path.join(out, period))
        if os.path.isdir(out):
            assert_whole(out)
    assert mid >= 1, "no kill landed while a period was being written"
    tc.cmd("export", "--scheduled", "--once", "--now", iso(now), extra=extra)
    got = periods(out)
    assert len(got) == 40
    assert not [d for d in os.listdir(out) if d.startswith(".")]
    assert_whole(out)
    # Every period's rows are the store's of [start, end); together the 40 periods are the store's.
    first = datetime.strptime(got[0], "%Y%m%dT%H%MZ").replace(tzinfo=timezone.utc)
    rows = []
    for d in got:
        man, r = read_export(os.path.join(out, d))
        p_from, p_to = (datetime.fromisoformat(x.replace("Z", "+00:00"))
                        for x in man["parameters"]["period"].split("/"))
        assert p_to - p_from == timedelta(hours=1)
        assert summary(r) == store_summary(tc, p_from, p_to)
        rows += r
    assert summary(rows) == store_summary(tc, first, now)
    # Late data: readings of a closed period arrive; the next pass re-exports that period only.
    mtimes = {d: os.stat(os.path.join(out, d, "manifest.json")).st_mtime_ns for d in got}
    late_at = now - timedelta(hours=5, minutes=30)
    tc.simulate("--devices", "7", "--count", "7", "--seed", "34", "--start", iso(late_at),
                "--first-device", "9000")
    tc.run(idle=3, extra=(f"lake.dir={lake}", "lake.roll_seconds=1"))
    tc.cmd("export", "--scheduled", "--once", "--now", iso(now), extra=extra)
    late_dir = (late_at.replace(minute=0)).strftime("%Y%m%dT%H%MZ")
    changed = [d for d in got if os.stat(os.path.join(out, d, "manifest.json")).st_mtime_ns != mtimes[d]]
    assert changed == [late_dir]
    man, r = read_export(os.path.join(out, late_dir))
    p_from, p_to = (datetime.fromisoformat(x.replace("Z", "+00:00"))
                    for x in man["parameters"]["period"].split("/"))
    assert summary(r) == store_summary(tc, p_from, p_to)
    assert sum(1 for x in r if x["device_id"] == "sensor-09000") == 1


def test_scheduled_exports_metrics(tc, tmp_path):
    lake = str(tmp_path / "lake")
    out = str(tmp_path / "daily")
    populate(tc, lake, days=2.5, count=2000, devices=20, seed=35)
    spec = f"name=d schedule=\"0 0 * * *\" format=parquet profile=public lookback=2 out={out}"
    proc = tc.spawn("export", "--scheduled", extra=(
        f"lake.dir={lake}", f"export.schedules={spec}", "export.listen=127.0.0.1:0"))
    log = LogLines(proc.stderr)
    try:
        log.wait("/metrics on port", proc=proc)
        port = int(re.search(r"/metrics on port (\d+)", log.text()).group(1))

        def exported():
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            m = re.search(r'thermocline_export_periods_total\{export="d"\} (\d+)', body)
            return m and int(m.group(1)) == 2 and 'thermocline_export_failures_total{export="d"} 0' in body
        wait_for(exported, timeout=120, what="two periods on /metrics", proc=proc, log=log)
        assert len(periods(out)) == 2
        assert_whole(out)
    finally:
        stop_process(proc, log)
    assert proc.returncode == 0
    tc.assert_clean(log.text())


def test_export_of_an_encrypted_lake(tc, tmp_path):
    """With lake.encryption.* set, the export reads the encrypted lake with the master keys and
    writes plain files (masked by their profile); without the keys it fails, writing nothing."""
    from lake_kms import new_keys, write_key_file

    lake = str(tmp_path / "lake")
    key_file = write_key_file(tmp_path / "lake.keys", new_keys())
    enc = ("lake.encryption.enabled=true", f"lake.encryption.key_file={key_file}")
    tc.migrate()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)
    tc.simulate("--devices", "30", "--count", "1500", "--seed", "36", "--start", iso(start),
                "--cadence-ms", str(1_800_000))
    tc.run(idle=3, extra=(f"lake.dir={lake}", "lake.roll_seconds=1", *enc))
    frm, to = start, start + timedelta(days=2)
    out = str(tmp_path / "plain")
    export(tc, lake, out, "--from", iso(frm), "--to", iso(to), "--format", "parquet",
           extra=enc)
    man, rows = read_export(out)
    assert summary(rows) == store_summary(tc, frm, to)
    assert read_bytes(os.path.join(out, man["files"][0]["path"]))[:4] == b"PAR1"
    bad = tc.cmd("export", "--out", str(tmp_path / "nokeys"), "--from", iso(frm), "--to", iso(to),
                 "--format", "csv", extra=(f"lake.dir={lake}",), check=False)
    assert bad.returncode == 1 and ".parquet" in bad.stderr, bad.stderr
    assert not os.path.exists(str(tmp_path / "nokeys"))
    assert not [d for d in os.listdir(str(tmp_path)) if d.startswith(".nokeys")]
