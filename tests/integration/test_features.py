"""The offline feature store: `features build` over a lake the pipeline wrote equals an independent
pandas computation; the build is incremental (only changed lake days) with the result of a full
one; `features training-set` joins labels point in time, with no leakage from the future; Dask and
Spark read the lake and the features with pyarrow's counts and sums.

Tolerance of every comparison with pandas: |feature - pandas| <= 1e-9 x max(1, |pandas|)
(features_lake.TOLERANCE). The quality monitor's findings and figures (anomalies, late, gaps, the
delay quantiles...) are compared the same way with pandas over the rows of its tables
(features_lake.quality_reference: counts and sums exact, the quantiles a bucket's middle), and by
hand in one test.
"""

import math
import os
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from conftest import Thermocline
from features_lake import (US, QualityTables, assert_features_equal_reference, feature_table,
                           lake_frame, parse_defs, write_lake_file)

# Every aggregate, 1 h and 1 d windows, two metrics and one the lake lacks; the quality monitor's
# findings and figures (from PostgreSQL: the quality sink runs with the pipeline).
DEFINITIONS = """
t_count_1h = count(temperature, 1h)
t_mean_1h = mean(temperature, 1h)
t_std_1h = std(temperature, 1h)
t_min_1h = min(temperature, 1h)
t_max_1h = max(temperature, 1h)
t_last_1h = last(temperature, 1h)
t_slope_1h = slope(temperature, 1h)
h_missing_1h = share_missing(humidity, 1h)
t_hot_1h = out_of_range(temperature, 1h, max=24)
t_anomalies_1h = anomalies(temperature, 1h)
h_anomalies_1d = anomalies(humidity, 1d)
late_1h = late(1h); ooo_1h = out_of_order(1h); dead_1h = dead_letters(1h)
dup_1d = duplicates(1d); gaps_1d = gaps(1d); gap_max_1d = gap_max_s(1d)
delay_p50_1h = delay_p50_ms(1h); delay_p99_1d = delay_p99_ms(1d)
p_mean_1d = mean(pressure, 1d); p_std_1d = std(pressure, 1d)
b_slope_1d = slope(battery, 1d)
h_missing_1d = share_missing(humidity, 1d)
co2_mean_1h = mean(co2_ppm, 1h)
"""
QUALITY_RULES = ("rules:\n"
                 "  - name: warm\n"
                 "    check: {range: {metric: temperature, max: 22}}\n"
                 "  - name: dry\n"
                 "    check: {range: {metric: humidity, min: 35}}\n")


@pytest.fixture(scope="module")
def pipeline_lake(tmp_path_factory):
    """A lake the pipeline wrote: 30 devices every 10 minutes over about 30 hours (two UTC days),
    with invalid readings (refused), spikes, stuck values, late and out-of-order bursts, the
    quality monitor's findings and figures of them, and the features built over it."""
    tc = Thermocline("features")
    lake = str(tmp_path_factory.mktemp("features") / "lake")
    # The detectors need more history than this fleet has to find a spike: rules find ranges
    # of readings (many over several hours, some still open at the end).
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    rules.write_text(QUALITY_RULES)
    try:
        tc.migrate()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30 * 3600))
        tc.simulate("--devices", "30", "--count", str(30 * 180), "--invalid-ratio", "0.02",
                    "--seed", "7", "--start", start, "--cadence-ms", str(600_000),
                    "--anomalies", "spike=0.02,stuck=0.01,late=0.01,ooo=0.01")
        tc.run(idle=3, extra=(f"lake.dir={lake}", "pipeline.sinks=store,lake,quality",
                              "quality.flush_interval_ms=300", f"quality.rules_file={rules}"))
        out = tc.cmd("features", "build", extra=(f"lake.dir={lake}", f"features.definitions={DEFINITIONS}"))
        yield tc, lake, out.stdout
    finally:
        tc.drop()


def test_every_offline_feature_equals_pandas(pipeline_lake):
    tc, lake, out = pipeline_lake
    assert "built" in out
    df = lake_frame(lake)
    assert len(df) > 4000
    defs = parse_defs(DEFINITIONS)
    checked = assert_features_equal_reference(os.path.join(lake, "features"), df, defs, QualityTables(tc))
    assert checked > 5000
    # Spikes made some hot hours, and some windows miss humidity or not: the figures are not
    # trivially constant.
    hot, _ = feature_table(os.path.join(lake, "features"), "t_hot_1h")
    assert any(v > 0 for v in hot.values())
    # The quality monitor's rules found warm and dry stretches, it counted late readings and gaps:
    # the quality features are not all 0. (Dead letters count in the minute they were received,
    # which has a window of these readings or not depending on the clock: compared, not required;
    # the test by hand below has some.)
    for name in ("t_anomalies_1h", "h_anomalies_1d", "late_1h", "gaps_1d"):
        values, _ = feature_table(os.path.join(lake, "features"), name)
        assert any(v > 0 for v in values.values()), name
    for name in ("delay_p50_1h", "delay_p99_1d", "gap_max_1d"):
        values, _ = feature_table(os.path.join(lake, "features"), name)
        assert any(v > 0 for v in values.values() if not math.isnan(v)), name
    co2, _ = feature_table(os.path.join(lake, "features"), "co2_mean_1h")
    assert co2 and all(math.isnan(v) for v in co2.values())
    # Files are whole Parquet files with the Hive layout; no temporary file is left.
    for dirpath, _dirs, files in os.walk(os.path.join(lake, "features")):
        assert not [f for f in files if f.startswith(".")], dirpath


def _day_us(y, m, d):
    import datetime
    return int(datetime.datetime(y, m, d, tzinfo=datetime.timezone.utc).timestamp()) * US


def _readings(day_us, devices, step_s, n, seed):
    import random
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        for dev in devices:
            humidity = None if rnd.random() < 0.1 else 40 + rnd.random() * 20
            rows.append((day_us + i * step_s * US + rnd.randrange(step_s) * US, dev,
                         {"temperature": 15 + rnd.gauss(0, 3) + i * 0.01, "humidity": humidity}))
    return rows


def _build(tc, lake, defs, features_dir=None, full=False):
    extra = [f"lake.dir={lake}", f"features.definitions={defs}"]
    if features_dir:
        extra.append(f"features.dir={features_dir}")
    out = tc.cmd("features", "build", *(["--full"] if full else []), extra=tuple(extra)).stdout
    # "features build: D days, B built, R lake rows read, ..."
    words = out.split()
    return int(words[2]), int(words[4]), out


def _snapshot(features_dir):
    out = {}
    for dirpath, _dirs, files in os.walk(features_dir):
        for f in files:
            if f.endswith(".parquet"):
                st = os.stat(os.path.join(dirpath, f))
                out[os.path.relpath(os.path.join(dirpath, f), features_dir)] = (st.st_ino, st.st_mtime_ns)
    return out


def test_incremental_build_rebuilds_only_changed_days(tmp_path):
    tc = Thermocline("feat-incr")  # no services touched: the lake is written here
    lake = str(tmp_path / "lake")
    defs = "m = mean(temperature, 1h); s = std(temperature, 1d); l = last(temperature, 1h); " \
           "h = share_missing(humidity, 1h); k = slope(temperature, 1h)"
    devices = [f"dev-{i}" for i in range(5)]
    d1, d2, d3 = _day_us(2026, 11, 1), _day_us(2026, 11, 2), _day_us(2026, 11, 3)
    write_lake_file(lake, "t", 0, 0, _readings(d1, devices, 600, 144, 1))
    write_lake_file(lake, "t", 0, 720, _readings(d2, devices, 600, 72, 2))
    days, built, _ = _build(tc, lake, defs)
    assert (days, built) == (2, 2)
    before = _snapshot(os.path.join(lake, "features"))
    assert len(before) == 2 * 5

    # Nothing changed: nothing rebuilt, no file touched.
    assert _build(tc, lake, defs)[:2] == (2, 0)
    assert _snapshot(os.path.join(lake, "features")) == before

    # A new commit of day 2 (its afternoon) and a new day 3.
    write_lake_file(lake, "t", 0, 1080, _readings(d2 + 12 * 3600 * US, devices, 600, 72, 3))
    write_lake_file(lake, "t", 1, 0, _readings(d3, devices, 900, 10, 4))
    days, built, _ = _build(tc, lake, defs)
    assert (days, built) == (3, 2)
    after = _snapshot(os.path.join(lake, "features"))
    for rel, ident in before.items():
        if "day=01" in rel:
            assert after[rel] == ident, f"{rel} was rewritten though its lake day did not change"
        else:
            assert after[rel] != ident, f"{rel} was not rebuilt though its lake day changed"
    assert len(after) == 3 * 5

    # The same result as a full build into another directory, and as pandas.
    full_dir = str(tmp_path / "full")
    assert _build(tc, lake, defs, features_dir=full_dir, full=True)[:2] == (3, 3)
    for name in ("m", "s", "l", "h", "k"):
        inc = ds.dataset(os.path.join(lake, "features", name), partitioning="hive").to_table()
        ful = ds.dataset(os.path.join(full_dir, name), partitioning="hive").to_table()
        assert inc.sort_by([("device_id", "ascending"), ("window_start", "ascending")]).equals(
            ful.sort_by([("device_id", "ascending"), ("window_start", "ascending")])), name
    assert_features_equal_reference(os.path.join(lake, "features"), lake_frame(lake), parse_defs(defs))

    # Changed definitions rebuild every day.
    assert _build(tc, lake, defs + "; x = max(temperature, 1h)")[:2] == (3, 3)
    # A replaced lake file (a replay, a compaction) rebuilds its day.
    path = write_lake_file(lake, "t", 1, 0, _readings(d3, devices, 900, 12, 5))
    assert os.path.exists(path)
    assert _build(tc, lake, defs + "; x = max(temperature, 1h)")[:2] == (3, 1)


def test_training_set_has_no_leakage_from_the_future(tmp_path):
    """Device a reads 20 until 12:00 and 80 from 12:00 on; labels sit just before and right at the
    change. A feature as of a label may only use windows closed at or before the label's time."""
    tc = Thermocline("feat-pit")
    lake = str(tmp_path / "lake")
    day = _day_us(2026, 11, 10)
    rows = []
    for minute in range(0, 24 * 60, 5):
        t = day + minute * 60 * US
        rows.append((t, "a", {"temperature": 20.0 if minute < 12 * 60 else 80.0, "humidity": 50.0}))
        rows.append((t, "b", {"temperature": 10.0 + minute / 60, "humidity": None}))
    write_lake_file(lake, "t", 0, 0, rows)
    # The previous day, so that 1d windows have a closed one.
    prev = [(day - 86400 * US + m * 60 * US, "a", {"temperature": 5.0, "humidity": 50.0})
            for m in range(0, 24 * 60, 60)]
    write_lake_file(lake, "t", 0, len(rows), prev)
    defs = "m1h = mean(temperature, 1h); x1h = max(temperature, 1h); m1d = mean(temperature, 1d); " \
           "n1h = count(temperature, 1h)"
    _build(tc, lake, defs)

    def iso(us):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // US)) + f".{us % US:06d}Z"

    noon = day + 12 * 3600 * US
    labels = [
        ("a", noon - 1, 0),                 # 11:59:59.999999: the 11:00 window is still open
        ("a", noon, 1),                     # 12:00: 11:00-12:00 closed, 12:00's reading not seen
        ("a", noon + 3600 * US - 1, 1),     # 12:59:59.999999: the 12:00 window still open
        ("a", noon + 3600 * US, 1),         # 13:00: the 12:00 window (all 80) closed
        ("b", day + 30 * 60 * US, 0),       # 00:30: no closed window of b yet
        ("zz", noon, 0),                    # a device the lake does not know
    ]
    csv = tmp_path / "labels.csv"
    csv.write_text("time,device_id,label,comment\n" + "".join(
        f"{iso(t)},{dev},{label},x\n" for dev, t, label in labels))
    out = str(tmp_path / "train.parquet")
    tc.cmd("features", "training-set", "--labels", str(csv), "--out", out,
           extra=(f"lake.dir={lake}", f"features.definitions={defs}"))
    t = pq.read_table(out)
    assert t.column_names == ["device_id", "time", "label", "m1h", "x1h", "m1d", "n1h"]
    rows_out = t.to_pylist()
    assert [r["device_id"] for r in rows_out] == [dev for dev, _, _ in labels]
    assert pc.cast(t.column("time"), pa.int64()).to_pylist() == [ts for _, ts, _ in labels]
    assert [r["label"] for r in rows_out] == [float(lab) for _, _, lab in labels]
    # Before the change nothing of 80 may show, not even in a max.
    assert rows_out[0]["m1h"] == 20.0 and rows_out[0]["x1h"] == 20.0  # 10:00-11:00
    assert rows_out[1]["m1h"] == 20.0 and rows_out[1]["x1h"] == 20.0  # 11:00-12:00
    assert rows_out[2]["x1h"] == 20.0
    assert rows_out[3]["m1h"] == 80.0 and rows_out[3]["n1h"] == 12
    # The day's window closes at midnight: every label of the day sees the previous day's.
    assert all(r["m1d"] == 5.0 for r in rows_out[:4])
    assert rows_out[4]["m1h"] is None and rows_out[4]["m1d"] is None
    assert rows_out[5]["m1h"] is None

    # The same labels as Parquet give the same training set.
    pq.write_table(pa.table({
        "device_id": [dev for dev, _, _ in labels],
        "time": pa.array([ts for _, ts, _ in labels], pa.timestamp("us", tz="UTC")),
        "label": pa.array([lab for _, _, lab in labels], pa.int64())}), str(tmp_path / "labels.parquet"))
    out2 = str(tmp_path / "train2.parquet")
    tc.cmd("features", "training-set", "--labels", str(tmp_path / "labels.parquet"), "--out", out2,
           extra=(f"lake.dir={lake}", f"features.definitions={defs}"))
    assert pq.read_table(out2).equals(t)


def test_training_set_refuses_bad_labels_naming_the_line(tmp_path):
    tc = Thermocline("feat-bad")
    lake = str(tmp_path / "lake")
    write_lake_file(lake, "t", 0, 0, [(_day_us(2026, 11, 10), "a", {"temperature": 1.0})])
    bad = tmp_path / "labels.csv"
    bad.write_text("device_id,time,label\na,2026-11-10T01:00:00Z,1\na,yesterday,0\n")
    proc = tc.cmd("features", "training-set", "--labels", str(bad), "--out", str(tmp_path / "o.parquet"),
                  extra=(f"lake.dir={lake}", "features.definitions=m = mean(temperature, 1h)"), check=False)
    assert proc.returncode != 0
    assert f"{bad}:3: time \"yesterday\"" in proc.stderr
    assert not os.path.exists(tmp_path / "o.parquet")
    proc = tc.cmd("features", "build", extra=(f"lake.dir={lake}", "features.definitions=m = median(t, 1h)"),
                  check=False)
    assert proc.returncode == 2
    assert "features.definitions:1:5: unknown aggregate \"median\"" in proc.stderr


def _pyarrow_figures(path, column):
    t = ds.dataset(path, format="parquet", partitioning="hive").to_table(columns=[column])
    return t.num_rows, pc.sum(t.column(column)).as_py()


# Dask 2026.8 calls DataFrame.reset_index(inplace=True), which pandas 3.1 deprecates: its warning,
# not ours.
@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
def test_dask_reads_the_lake_and_the_features(pipeline_lake):
    import dask.dataframe as dd
    _tc, lake, _ = pipeline_lake
    for path, column in ((os.path.join(lake, "telemetry"), "temperature"),
                         (os.path.join(lake, "features", "t_mean_1h"), "value"),
                         (os.path.join(lake, "features", "p_std_1d"), "value")):
        rows, total = _pyarrow_figures(path, column)
        frame = dd.read_parquet(path, columns=[column])
        assert int(frame[column].size.compute()) == rows
        assert math.isclose(float(frame[column].sum().compute()), total, rel_tol=1e-12)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    # One session for the module; a small local one: the JIT's first tier only (most of a short
    # run's time is compiling), no UI, few shuffle partitions.
    session = (SparkSession.builder.master("local[2]").appName("thermocline-features-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    yield session
    session.stop()


def test_spark_reads_the_lake_and_the_features(pipeline_lake, spark):
    from pyspark.sql import functions as F
    _tc, lake, _ = pipeline_lake
    for path, column in ((os.path.join(lake, "telemetry"), "temperature"),
                         (os.path.join(lake, "features", "t_mean_1h"), "value")):
        rows, total = _pyarrow_figures(path, column)
        frame = spark.read.parquet(path)
        got = frame.agg(F.count(F.lit(1)).alias("n"), F.sum(column).alias("s")).collect()[0]
        assert got["n"] == rows
        assert math.isclose(got["s"], total, rel_tol=1e-12)
        # The Hive partitions are columns, as in pyarrow.
        assert {"year", "month", "day"} <= set(frame.columns)


@pytest.mark.filterwarnings("ignore:The inplace keyword:pandas.errors.Pandas4Warning")
def test_ml_doc_snippets_read_the_lake(pipeline_lake, spark):
    """Each Python snippet of docs/ml.md, run against this lake, counts and sums the readings as
    pyarrow does (the Spark one takes the module's session through getOrCreate)."""
    import re
    _tc, lake, _ = pipeline_lake
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "ml.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 4
    rows, total = _pyarrow_figures(os.path.join(lake, "telemetry"), "temperature")
    for code in blocks:
        assert 'lake = "/var/lib/thermocline/lake"' in code
        ns = {}
        exec(code.replace('"/var/lib/thermocline/lake"', repr(lake)), ns)
        assert ns["count"] == rows, code
        assert math.isclose(ns["total"], total, rel_tol=1e-12), code


def test_a_failed_build_leaves_whole_files_and_the_next_one_completes_it(tmp_path):
    """A feature file that cannot be written (a directory stands where its temporary file goes)
    fails the build naming the path; every file is still a whole Parquet file (old or new), the day
    is not recorded as built, and the next build, once the way is clear, rebuilds it."""
    tc = Thermocline("feat-fail")
    lake = str(tmp_path / "lake")
    defs = "a = mean(temperature, 1h); b = max(temperature, 1h)"
    day = _day_us(2026, 11, 20)
    write_lake_file(lake, "t", 0, 0, _readings(day, ["d1", "d2"], 600, 72, 1))
    assert _build(tc, lake, defs)[:2] == (1, 1)
    write_lake_file(lake, "t", 0, 144, _readings(day + 12 * 3600 * US, ["d1", "d2"], 600, 72, 2))
    blocker = os.path.join(lake, "features", "b", "year=2026", "month=11", "day=20", ".part-20261120.parquet.tmp")
    os.mkdir(blocker)
    extra = (f"lake.dir={lake}", f"features.definitions={defs}")
    proc = tc.cmd("features", "build", extra=extra, check=False)
    assert proc.returncode == 1
    assert blocker in proc.stderr
    for name in ("a", "b"):
        t = pq.read_table(os.path.join(lake, "features", name, "year=2026", "month=11", "day=20", "part-20261120.parquet"))
        assert t.num_rows > 0
    old_b, _ = feature_table(os.path.join(lake, "features"), "b")
    assert max(s for _, s in old_b) < day + 12 * 3600 * US, "b holds the afternoon though its write failed"
    os.rmdir(blocker)
    assert _build(tc, lake, defs)[:2] == (1, 1)
    assert_features_equal_reference(os.path.join(lake, "features"), lake_frame(lake), parse_defs(defs))


def test_readings_out_of_time_order_land_in_their_windows(tmp_path):
    """Late and shuffled readings (two files, each in random time order) make many runs of one
    window; the build merges them: every feature still equals pandas, with one row per window."""
    import random
    tc = Thermocline("feat-ooo")
    lake = str(tmp_path / "lake")
    rows = _readings(_day_us(2026, 11, 21), ["d1", "d2", "d3"], 300, 200, 9)
    random.Random(5).shuffle(rows)
    write_lake_file(lake, "t", 0, 0, rows[:300])
    write_lake_file(lake, "t", 1, 0, rows[300:])
    defs = ("m = mean(temperature, 1h); s = std(temperature, 1h); l = last(temperature, 1h); "
            "k = slope(temperature, 1h); h = share_missing(humidity, 1h); x = min(temperature, 1d)")
    _build(tc, lake, defs)
    assert_features_equal_reference(os.path.join(lake, "features"), lake_frame(lake), parse_defs(defs))


def test_quality_features_by_hand_and_rebuilt_when_the_monitors_tables_change(tmp_path):
    """Findings and figures written by hand into the quality monitor's tables, beside a lake
    written by hand: every value is the one worked out here (a finding counts in each window it
    overlaps, an open one up to the day's end; sums, the longest gap, the merged sketch's
    quantile); a build with nothing changed rebuilds nothing, and a finding resolved later
    rebuilds its day only, with the new counts."""
    import datetime
    tc = Thermocline("feat-quality")
    lake = str(tmp_path / "lake")
    defs = ("a = anomalies(temperature, 1h); h = anomalies(humidity, 1h); l = late(1h);"
            " g = gap_max_s(1h); p = delay_p99_ms(1d); d = dead_letters(1h)")
    d1, d2 = _day_us(2026, 11, 1), _day_us(2026, 11, 2)
    ts = lambda us: datetime.datetime.fromtimestamp(us / US, datetime.timezone.utc)
    H = 3600 * US
    try:
        tc.migrate()
        write_lake_file(lake, "t", 0, 0, _readings(d1, ["dev-0", "dev-1"], 600, 144, 1))
        write_lake_file(lake, "t", 0, 1000, _readings(d2, ["dev-0", "dev-1"], 600, 144, 2))
        finding = ("INSERT INTO anomalies (device_id, metric, kind, rule, start_time, end_time)"
                   " VALUES (%s, %s, 'range', %s, %s, %s)")
        # 01:30 to 03:10 of day 1: hours 1, 2 and 3; one at exactly 05:00 (an instant): hour 5.
        tc.sql(finding, ("dev-0", "temperature", "r1", ts(d1 + 90 * 60 * US), ts(d1 + 190 * 60 * US)))
        tc.sql(finding, ("dev-0", "temperature", "r2", ts(d1 + 5 * H), ts(d1 + 5 * H)))
        # Open since 22:15 of day 2: hours 22 and 23 (the day ends there).
        tc.sql(finding, ("dev-1", "temperature", "r3", ts(d2 + 22 * H + 15 * 60 * US), None))
        # Another metric's finding is not the temperature's.
        tc.sql(finding, ("dev-1", "humidity", "r4", ts(d1 + 7 * H), ts(d1 + 7 * H + 60 * US)))
        minute = ("INSERT INTO quality_1m (device_id, bucket, readings, late, gap_max_s, delay_sketch,"
                  " dead_letters) VALUES (%s, %s, 1, %s, %s, %s, %s)")
        tc.sql(minute, ("dev-0", ts(d1 + 5 * 60 * US), 3, 100.0, [0, 0, 4], 0))
        tc.sql(minute, ("dev-0", ts(d1 + 40 * 60 * US), 2, 250.5, [0, 0, 0, 0, 1], 1))
        tc.sql(minute, ("dev-1", ts(d2 + 10 * H), 0, None, [1], 0))
        tc.sql(minute, ("dev-1", ts(d2 + 10 * H + 60 * US), 0, None, None, 2))
        assert _build(tc, lake, defs)[:2] == (2, 2)
        f = os.path.join(lake, "features")
        a, _ = feature_table(f, "a")
        want = {("dev-0", d1 + i * H) for i in (1, 2, 3, 5)} | {("dev-1", d2 + i * H) for i in (22, 23)}
        assert {k for k, v in a.items() if v} == want and all(a[k] == 1 for k in want)
        assert len(a) == 2 * 48 and all(v == 0 for k, v in a.items() if k not in want)
        h, _ = feature_table(f, "h")
        assert {k: v for k, v in h.items() if v} == {("dev-1", d1 + 7 * H): 1}
        late, _ = feature_table(f, "l")
        assert {k: v for k, v in late.items() if v} == {("dev-0", d1): 5}
        dead, _ = feature_table(f, "d")
        assert {k: v for k, v in dead.items() if v} == {("dev-0", d1): 1, ("dev-1", d2 + 10 * H): 2}
        g, _ = feature_table(f, "g")
        assert {k: v for k, v in g.items() if not math.isnan(v)} == {("dev-0", d1): 250.5}
        p, _ = feature_table(f, "p")
        # Day 1 of dev-0: 4 delays in bucket 3, 1 in bucket 5: the 99th percentile is bucket 5's
        # middle, 2^(7/8) ms; day 2 of dev-1: bucket 1, 0.5 ms; no sketch: undefined.
        assert p[("dev-0", d1)] == 2 ** (7 / 8) and p[("dev-1", d2)] == 0.5
        assert math.isnan(p[("dev-1", d1)]) and math.isnan(p[("dev-0", d2)])

        assert _build(tc, lake, defs)[:2] == (2, 0)
        tc.sql("UPDATE anomalies SET end_time = %s WHERE rule = 'r3'", (ts(d2 + 22 * H + 50 * 60 * US),))
        assert _build(tc, lake, defs)[:2] == (2, 1)
        a, _ = feature_table(f, "a")
        assert a[("dev-1", d2 + 22 * H)] == 1 and a[("dev-1", d2 + 23 * H)] == 0
        assert a[("dev-0", d1 + H)] == 1
    finally:
        tc.drop()
