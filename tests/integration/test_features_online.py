"""The online features sink ("features" in pipeline.sinks) against the real Kafka and PostgreSQL:
every row of telemetry.features_online equals an independent pandas computation over the store's
raw rows (the same readings: the store is the primary sink), also after kill -9 in the middle of
runs (nothing lost, nothing counted twice) and with a windows cap far below what a run holds;
every closed window equals the offline build's (`features build` over the lake of the same run);
a write over a mark another member moved is fenced; the api schema shows the features to analysts.

Tolerance: values are doubles computed by Welford's updates and merges in a different order from
pandas' two-pass formulas, so they agree to a relative 1e-9 (1e-6 for the slope, a ratio of two
co-moments), and exactly for counts, shares and last values. The quality monitor's findings and
figures (anomalies, late, gaps, delay quantiles...) are compared with pandas over the rows of its
tables (features_lake.quality_reference), with the same tolerance (they are counts, sums, a
maximum and a sketch bucket's middle: exact in fact)."""

import math
import os
import signal
import time

import pandas as pd
import psycopg
import pytest

from api_data import as_role
from features_lake import QUALITY_AGGS, QualityTables, feature_table, quality_reference
from features_lake import parse_defs as parse_defs_text
from waits import LogLines, wait_for

# Readings from 17:00 UTC of the latest day where that is at least four hours ago, all in the
# past: the 1 h windows close, and the day's window holds them all. None may come near
# validation.max_future_s: a sink reading a stretch again after a crash judges such a reading
# against a later clock than the store did. The hour of the day is fixed because the simulator's
# temperature and humidity follow a daily sine: from 17:00 they fall at their steepest (the
# quality monitor's drift findings, which the anomaly features count, are there at any time the
# tests run), where a run at night started at the sine's flat bottom and found none.
START = ((int(time.time()) // 3600 - 4 - 17) // 24 * 24 + 17) * 3600
DEFS = ("temp_mean_1h = mean(temperature, 1h); temp_std_1h = std(temperature, 1h);"
        " temp_min_1d = min(temperature, 1d); temp_max_1h = max(temperature, 1h);"
        " temp_last_1h = last(temperature, 1h); temp_slope_1h = slope(temperature, 1h);"
        " hum_count_1h = count(humidity, 1h); bat_missing_1d = share_missing(battery, 1d);"
        " bat_odd_1h = out_of_range(battery, 1h, min=0, max=80); lat_mean_1d = mean(latitude, 1d);"
        # The quality monitor's findings and figures (the quality sink runs beside this one).
        " temp_anomalies_1h = anomalies(temperature, 1h); hum_anomalies_1d = anomalies(humidity, 1d);"
        " late_1h = late(1h); dead_1h = dead_letters(1h); ooo_1d = out_of_order(1d); gaps_1h = gaps(1h);"
        " gap_max_1d = gap_max_s(1d); dup_1d = duplicates(1d); delay_p50_1h = delay_p50_ms(1h);"
        " delay_p99_1d = delay_p99_ms(1d)")
SINKS = "pipeline.sinks=store,rollups,quality,features"
# Rules whose findings span hours (the detectors need more history than these fleets have).
QUALITY_RULES = ("rules:\n"
                 "  - name: warm\n"
                 "    check: {range: {metric: temperature, max: 22}}\n"
                 "  - name: dry\n"
                 "    check: {range: {metric: humidity, min: 35}}\n")
RULES_FILE = []


@pytest.fixture(scope="module", autouse=True)
def _rules_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(QUALITY_RULES)
    RULES_FILE[:] = [str(path)]


def settings(*extra):
    return (SINKS, f"features.definitions={DEFS}", "features.online_flush_interval_ms=200",
            "quality.flush_interval_ms=300", f"quality.rules_file={RULES_FILE[0]}",
            # Devices' phases differ by up to a cadence (120 s): some of their readings are late.
            "quality.late_after_s=30", *extra)


def parse_defs():
    """{name: (aggregate, metric, window seconds, lo, hi)}: features_lake's parser, not the sink's."""
    return {d[0]: d[1:] for d in parse_defs_text(DEFS)}


def simulate(tc, devices, count, cadence_s, shift_s=0):
    assert START + shift_s + count // devices * cadence_s < time.time() - 600
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + shift_s))
    return tc.simulate("--devices", str(devices), "--count", str(count), "--seed", "20",
                       "--start", start, "--cadence-ms", str(cadence_s * 1000),
                       "--invalid-ratio", "0.03", "--anomalies", "late=0.02")


def expected(tc):
    """Every feature of every device and window, from the store's rows with pandas."""
    rows = tc.sql("SELECT device_id, (extract(epoch FROM time) * 1000000)::bigint AS t_us,"
                  " kafka_partition, kafka_offset, temperature, humidity, battery, latitude"
                  " FROM readings")
    df = pd.DataFrame(rows, columns=["device_id", "t_us", "part", "off", "temperature", "humidity",
                                     "battery", "latitude"])
    df = df.sort_values(["t_us", "part", "off"], kind="stable")
    out = {}
    tables = QualityTables(tc)
    for name, (agg, metric, window_s, lo, hi) in parse_defs().items():
        w = window_s * 1_000_000
        df["start"] = df["t_us"] // w * w
        if agg in QUALITY_AGGS:
            windows = set(zip(df["device_id"], df["start"].astype("int64").tolist()))
            ref = quality_reference(tables, windows, (name, agg, metric, window_s, lo, hi))
            for (dev, start), g in df.groupby(["device_id", "start"]):
                val = ref[(dev, int(start))]
                out[(dev, name, start)] = (None if math.isnan(val) else val, len(g))
            continue
        for (dev, start), g in df.groupby(["device_id", "start"]):
            x = g[metric].astype("float64")
            v = x.dropna()
            t = (g.loc[v.index, "t_us"] - start) / 1e6
            if agg == "count":
                val = float(len(v))
            elif agg == "mean":
                val = v.mean() if len(v) else None
            elif agg == "std":
                val = v.std(ddof=1) if len(v) >= 2 else None
            elif agg == "min":
                val = v.min() if len(v) else None
            elif agg == "max":
                val = v.max() if len(v) else None
            elif agg == "last":
                val = v.iloc[-1] if len(v) else None
            elif agg == "slope":
                dt = t - t.mean()
                val = (dt * (v - v.mean())).sum() / (dt * dt).sum() if len(v) >= 2 and (dt * dt).sum() > 0 else None
            elif agg == "share_missing":
                val = (len(g) - len(v)) / len(g)
            elif agg == "out_of_range":
                val = float(((v < lo) | (v > hi)).sum())
            out[(dev, name, start)] = (None if val is None else float(val), len(g))
    return out


def stored(tc):
    return {(dev, name, start): (value, readings) for dev, name, start, value, readings in tc.sql(
        "SELECT device_id, feature, (extract(epoch FROM window_start) * 1000000)::bigint, value,"
        " rows FROM features_online")}


def assert_features_match(tc):
    exp, got = expected(tc), stored(tc)
    assert exp, "no readings stored"
    assert set(got) == set(exp), (sorted(set(exp) - set(got))[:5], sorted(set(got) - set(exp))[:5])
    aggs = {name: d[0] for name, d in parse_defs().items()}
    bad = []
    for key, (want, n) in exp.items():
        value, readings = got[key]
        rel = 1e-6 if aggs[key[1]] == "slope" else 1e-9
        ok = readings == n and ((want is None and value is None) or (
            want is not None and value is not None and math.isclose(value, want, rel_tol=rel, abs_tol=1e-9)))
        if not ok:
            bad.append((key, (value, readings), (want, n)))
    assert not bad, f"{len(bad)} of {len(exp)} features differ, e.g. {bad[:5]}"
    return exp


def test_online_features_equal_pandas_over_the_store(tc):
    tc.migrate()
    simulate(tc, 8, 800, 120)
    tc.run(extra=settings())
    exp = assert_features_match(tc)
    # Closed hourly windows are there (not only the current one), every kind of value is.
    starts = {k[2] for k in exp if k[1] == "temp_mean_1h"}
    assert len(starts) >= 3
    # The battery, not the temperature: the simulator's temperature follows the time of day, and
    # a fleet's readings of the night hours (UTC) were all inside any fixed bounds worth setting;
    # the battery depends on the device and the step only.
    assert any(v[0] for k, v in exp.items() if k[1] == "bat_odd_1h")
    # The quality features are not trivially 0: findings over several windows, late readings,
    # delays. (Dead letters count in the minute they were received, now: no window of these
    # readings of hours ago holds one; test_features.py has them.)
    for name in ("temp_anomalies_1h", "hum_anomalies_1d", "late_1h", "delay_p50_1h"):
        assert any(v[0] for k, v in exp.items() if k[1] == name), name
    # The marks are the store's: every partition read to its end.
    marks = dict(tc.sql("SELECT partition, next_offset FROM features_online_offsets"
                        " WHERE topic = %s AND group_id = %s", (tc.topic, tc.group)))
    ends = dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets WHERE topic = %s"
                       " AND group_id = %s AND next_offset >= 0", (tc.topic, tc.group)))
    assert marks == ends and sum(marks.values()) == 800
    # A second run over the same topic changes nothing.
    before = stored(tc)
    tc.run(idle=2, extra=settings())
    assert stored(tc) == before
    # Readings of the same windows a minute apart, in a later run: merged into the stored ones.
    simulate(tc, 8, 800, 120, shift_s=60)
    tc.run(idle=2, extra=settings())
    assert stored(tc)[key := min(before)][1] > before[key][1]
    assert_features_match(tc)


def test_kill_9_neither_loses_nor_counts_twice(tc):
    tc.migrate()
    simulate(tc, 40, 24000, 20)
    progress = lambda: tc.sql("SELECT coalesce(sum(next_offset), 0) FROM features_online_offsets")[0][0]
    seen = []
    for _ in range(2):
        proc = tc.spawn("run", extra=settings("pipeline.batch_size=200"))
        log = LogLines(proc.stderr)
        before = progress()
        wait_for(lambda: progress() > before, timeout=180, what="a features write", proc=proc, log=log)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        seen.append(progress())
    tc.run(extra=settings())
    total = 24000
    # The kills came in the middle: the marks were short of the end then.
    assert seen[0] < total, (seen, total)
    assert_features_match(tc)


def test_api_shows_the_features_to_analysts_only(tc):
    tc.migrate()
    simulate(tc, 4, 200, 120)
    tc.run(extra=settings())
    n = tc.sql("SELECT count(*) FROM features_online")[0][0]
    assert n > 0
    a = tc.api_schema
    with as_role(tc, "thermocline_analyst", '{"sites": "*"}') as conn:
        rows = conn.execute(f'SELECT device_id, feature, window_start, window_end, value, readings'
                            f' FROM "{a}".features_online').fetchall()
        assert len(rows) == n
        # latitude is personal: an analyst sees it exact.
        lat = conn.execute(f'SELECT value FROM "{a}".features_online WHERE feature = %s',
                           ("lat_mean_1d",)).fetchall()
        exact = tc.sql("SELECT value FROM features_online WHERE feature = 'lat_mean_1d'")
        assert sorted(lat) == sorted(exact)
    with as_role(tc, "thermocline_viewer", '{"sites": "*"}') as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT 1 FROM "{a}".features_online')


def test_windows_beyond_the_cap_wait_for_a_write(tc):
    """features.online_max_windows far below what a run holds (but one batch's worth: 15 readings x
    20 definitions): the sink writes at half of it and refuses a batch that would pass it (the
    pipeline reads it again after the write): still exact. The cap is reached only while a write
    is under way, so the test makes the write wait (another session holds the features table, as
    a slow database would) until a batch has been refused; left to the race, a fast write kept
    the second map under the cap in one run of three."""
    tc.migrate()
    simulate(tc, 8, 800, 120)
    with psycopg.connect(tc.dsn) as holder:
        holder.execute(f'LOCK TABLE "{tc.schema}".features_online IN SHARE MODE')
        proc = tc.spawn("run", "--exit-when-idle", "3",
                        extra=settings("features.online_max_windows=300", "pipeline.batch_size=15",
                                       "pipeline.batch_size_max=15",
                                       "features.online_flush_interval_ms=3600000"))
        log = LogLines(proc.stderr)
        try:
            log.wait("windows held", timeout=180, proc=proc)
        finally:
            holder.rollback()  # the write goes on
        try:
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.join()
            proc.stdout.close()
            proc.stderr.close()
    text = log.text()
    tc.assert_clean(text)
    assert proc.returncode == 0, text[-8000:]
    assert "raised to" not in text
    assert_features_match(tc)


def test_a_cap_below_one_batch_is_raised_to_it(tc):
    """A cap below what one batch brings could never take a batch arriving at an empty map (no
    write helps): it is raised to pipeline.batch_size_max x the definitions, and said so. (A cap
    of 300 with batches up to 10,000 readings once stopped a run on the first wide batch.)"""
    tc.migrate()
    simulate(tc, 8, 400, 120)
    ndefs = len(parse_defs())
    proc = tc.run(extra=settings("features.online_max_windows=1", "pipeline.batch_size=50",
                                 "pipeline.batch_size_max=200"))
    assert f"features.online_max_windows 1 raised to {200 * ndefs}" in proc.stderr
    assert_features_match(tc)


def test_a_write_over_another_members_mark_is_fenced(tc):
    """A partition's mark moved by someone else (another member, here by hand): the next write of
    that partition fails as fenced, writes nothing, and the sink resumes from the stored mark."""
    tc.migrate()
    simulate(tc, 8, 400, 120)
    proc = tc.spawn("run", extra=settings())
    log = LogLines(proc.stderr)
    try:
        marks = lambda: dict(tc.sql("SELECT partition, next_offset FROM features_online_offsets"))
        wait_for(lambda: sum(marks().values()) == 400, timeout=180, what="every reading's features",
                 proc=proc, log=log)
        part, mark = max(marks().items(), key=lambda kv: kv[1])
        tc.sql("UPDATE features_online_offsets SET next_offset = %s WHERE partition = %s",
               (mark + 3, part))
        simulate(tc, 8, 400, 120, shift_s=60)
        log.wait("another member owns it now", timeout=180, proc=proc)
        # Resumed from the mark it found: the partition's rows past it are written once more.
        wait_for(lambda: marks()[part] > mark + 3, timeout=180, what="the partition resumed",
                 proc=proc, log=log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        log.join()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
    assert "another member owns it now" in log.text() and f"partition {part}" in log.text()


def test_online_features_equal_the_offline_build_for_closed_windows(tc, tmp_path):
    """The same definitions, online (this sink, from the stream) and offline (`features build`,
    from the lake the same run wrote): every closed window has the same value."""
    lake = str(tmp_path / "lake")
    tc.migrate()
    simulate(tc, 8, 800, 120)
    tc.run(extra=settings(f"lake.dir={lake}", "pipeline.sinks=store,lake,quality,features"))
    tc.cmd("features", "build", extra=(f"lake.dir={lake}", f"features.definitions={DEFS}"))
    # Closed: the window ended before one instant, the same for both sides.
    cutoff = int(time.time() * 1_000_000)
    online = {(dev, name, start): value for dev, name, start, end, value in tc.sql(
        "SELECT device_id, feature, (extract(epoch FROM window_start) * 1000000)::bigint,"
        " (extract(epoch FROM window_end) * 1000000)::bigint, value FROM features_online")
        if end <= cutoff}
    compared = 0
    for name, (agg, _metric, window_s, _lo, _hi) in parse_defs().items():
        offline, _ = feature_table(os.path.join(lake, "features"), name)
        closed = {(dev, name, s): v for (dev, s), v in offline.items() if s + window_s * 1_000_000 <= cutoff}
        assert {k for k in online if k[1] == name} == set(closed), name
        for key, v in closed.items():
            got = online[key]
            rel = 1e-6 if agg == "slope" else 1e-9
            assert (got is None and math.isnan(v)) or (
                got is not None and math.isclose(got, v, rel_tol=rel, abs_tol=1e-9)), (key, got, v)
            compared += 1
    assert compared >= 8 * 3 * 7, compared
    # The findings and figures are there on both sides, not only zeros.
    for name in ("temp_anomalies_1h", "late_1h", "delay_p50_1h"):
        assert any(v for k, v in online.items() if k[1] == name), name


def test_the_ingest_role_may_write_what_the_sink_writes(tc):
    """thermocline_ingest (the pipeline's least-privilege role) has the grants the sink's write
    uses: read for update, upsert, the marks, a temporary table; analysts may not write."""
    tc.migrate()
    s = tc.schema
    statements = [
        "CREATE TEMP TABLE tc_probe (x int) ON COMMIT DELETE ROWS",
        f'SELECT * FROM "{s}".features_online FOR UPDATE',
        f'INSERT INTO "{s}".features_online (device_id, feature, window_start, window_end, window_s,'
        " metric, aggregate, rows, n, anomalies) VALUES ('d', 'f', now(), now(), 3600, 'temperature',"
        " 'count', 1, 1, 0) ON CONFLICT (device_id, feature, window_start) DO UPDATE SET rows = 2",
        # The quality features' refresh: the quality monitor's tables read, the values set.
        f'SELECT "{s}".tc_quality_sketch_quantile("{s}".tc_quality_sketch_sum(q.delay_sketch), 0.5),'
        f' sum(q.late) FROM "{s}".quality_1m q',
        f'SELECT count(*) FROM "{s}".anomalies a',
        f'SELECT count(*) FROM "{s}".quality_offsets',
        f'UPDATE "{s}".features_online SET value = 1 WHERE feature = \'f\'',
        f"INSERT INTO \"{s}\".features_online_offsets (group_id, topic, partition, next_offset)"
        " VALUES ('g', 't', 0, 5) ON CONFLICT DO NOTHING",
        f"UPDATE \"{s}\".features_online_offsets SET next_offset = 6 WHERE group_id = 'g'"
        " AND next_offset = 5",
    ]
    with as_role(tc, "thermocline_ingest") as conn:
        for sql in statements:
            conn.execute(sql)
    with as_role(tc, "thermocline_analyst", '{"sites": "*"}') as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statements[2])


def test_two_members_share_the_partitions_exactly(tc):
    """Two pipelines of one group (`run --exit-when-idle` each): the partitions split between them,
    each member's writes fenced by its own marks; the features are whole and exact when both
    have exited (a member waits for what the other's partitions hold: the sink's stored marks)."""
    tc.migrate()
    simulate(tc, 16, 3200, 60)
    procs = [tc.spawn("run", "--exit-when-idle", "3", extra=settings()) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        tc.assert_clean(err)
    marks = dict(tc.sql("SELECT partition, next_offset FROM features_online_offsets"))
    assert sum(marks.values()) == 3200
    assert_features_match(tc)
