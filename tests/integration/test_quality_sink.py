"""The quality sink in the pipeline ("quality" in pipeline.sinks), against the real Kafka and
PostgreSQL: every figure of quality_1m, quality_fleet_1m and quality_dead_letters_1m equals an
independent computation over the stored rows and dead letters; rules fire and resolve at the
event times they should, and a violation shorter than `for` never fires; a kill -9 in the middle of
open findings (a rule's and a detector's) neither loses nor duplicates them, nor any figure; a
malformed rules file on SIGHUP is refused with its line and column while the running rules stay in
force; the fleet's figures are on /metrics without a label per device."""

import collections
import itertools
import json
import math
import os
import signal
import struct
import time

import psycopg
import pytest
from confluent_kafka import Producer

from api_data import as_role
from test_observe import free_port, metrics, wait_for, _up
from test_timescale import USABLE as TIMESCALE_USABLE, WHY as TIMESCALE_WHY

SINKS = "store,quality"
MINUTE_US = 60_000_000
LATE_AFTER_US = 60_000_000
GAP_FACTOR = 3.0
# The delay sketch (src/quality/metrics.h): 4 buckets per octave of milliseconds.
SKETCH_PER_OCT = 4
BASE_US = (int(time.time()) // 3600 - 2) * 3600 * 1_000_000  # two hours ago, on the hour
CADENCE_US = 10_000_000


def f32(x):
    """x rounded to a C float, as the metrics keep a device's usual interval (a sum of two floats
    computed in double and rounded once is the float sum)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def quality_settings(*extra):
    return (f"pipeline.sinks={SINKS}", "quality.flush_interval_ms=300", *extra)


def expected_figures(tc):
    """quality_1m, quality_fleet_1m and quality_dead_letters_1m computed from the stored rows and
    dead letters, in the order the sink saw them (offsets within a partition)."""
    rows = tc.sql(
        "SELECT device_id, (extract(epoch FROM time) * 1000000)::bigint, kafka_partition,"
        " temperature IS NOT NULL, humidity IS NOT NULL, pressure IS NOT NULL,"
        " battery IS NOT NULL, latitude IS NOT NULL, longitude IS NOT NULL"
        " FROM readings ORDER BY kafka_partition, kafka_offset")
    dev = collections.defaultdict(lambda: {"readings": 0, "n": [0] * 6, "late": 0, "ooo": 0,
                                           "gaps": 0, "gap_max": None, "dead": 0, "dup": 0})
    watermark = {}
    last = {}  # device -> [last_t, usual interval (float32), readings in order]
    for device, t, part, *present in rows:
        key = (device, t // MINUTE_US)
        r = dev[key]
        wm = watermark.get(part) or t
        watermark[part] = max(watermark.get(part, 0), t)
        late = wm - t > LATE_AFTER_US
        st = last.setdefault(device, [0, 0.0, 0])
        ooo = st[2] > 0 and t < st[0]
        gap = False
        if st[2] > 0 and t > st[0]:
            gap_s = (t - st[0]) / 1e6
            gap = st[2] >= 3 and gap_s > GAP_FACTOR * st[1]
            if st[2] == 1:
                st[1] = f32(gap_s)
            else:
                st[1] = f32(st[1] + f32(0.1 * (min(gap_s, 2.0 * st[1]) - st[1])))
            if gap:
                r["gap_max"] = max(r["gap_max"] or 0.0, gap_s)
        if not ooo:
            st[0] = t
            st[2] += 1
        r["readings"] += 1
        r["n"] = [a + int(b) for a, b in zip(r["n"], present)]
        r["late"] += late
        r["ooo"] += ooo
        r["gaps"] += gap
    by_reason = collections.Counter()
    for key, received, reason in tc.sql(
            "SELECT kafka_key, (extract(epoch FROM received_at) * 1000000)::bigint, reason"
            " FROM dead_letters"):
        minute = received // MINUTE_US
        by_reason[(minute, reason)] += 1
        device = None
        if key:
            try:
                device = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                device = None
            if device is not None and (len(bytes(key)) > 128 or "\0" in device):
                device = None
        if device is not None:
            dev[(device, minute)]["dead"] += 1
            dev[(device, minute)]["dup"] += reason == "duplicate"
        fleet_dead = dev[(None, minute)]
        fleet_dead["dead"] += 1
        fleet_dead["dup"] += reason == "duplicate"
    fleet = collections.defaultdict(lambda: {"readings": 0, "n": [0] * 6, "late": 0, "ooo": 0,
                                             "gaps": 0, "gap_max": None, "dead": 0, "dup": 0,
                                             "devices": 0})
    devices = {k: v for k, v in dev.items() if k[0] is not None}
    for (device, minute), r in list(dev.items()):
        f = fleet[minute]
        # Dead letters are counted once for the fleet (in the device-less entry).
        for k in ("readings", "late", "ooo", "gaps") + (("dead", "dup") if device is None else ()):
            f[k] += r[k]
        f["n"] = [a + b for a, b in zip(f["n"], r["n"])]
        if r["gap_max"] is not None:
            f["gap_max"] = max(f["gap_max"] or 0.0, r["gap_max"])
        f["devices"] += device is not None and r["readings"] > 0
    return devices, dict(fleet), dict(by_reason)


def quantile(sketch, q):
    """tc_qm_sketch_quantile over a stored sketch."""
    total = sum(sketch)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, v in enumerate(sketch):
        seen += v
        if seen >= rank:
            return 0.5 if i == 0 else 2 ** ((2 * i - 1) / (2 * SKETCH_PER_OCT))
    return None


# A stored sketch starts at its first bucket that counts (its lower bound: subscript b + 1 is
# bucket b); read from bucket 0, as a list whose index is the bucket.
SKETCH_FROM_0 = ("ARRAY(SELECT coalesce(delay_sketch[i], 0)"
                 " FROM generate_series(1, array_upper(delay_sketch, 1)) AS i)")
FIGURES = ("readings, ARRAY[temperature_n, humidity_n, pressure_n, battery_n, latitude_n,"
           " longitude_n], late, out_of_order, gaps, gap_max_s, dead_letters, duplicates, "
           + SKETCH_FROM_0 + ", delay_p50_ms, delay_p99_ms")


def stored_figures(tc):
    devices = {}
    for device, minute, n, present, late, ooo, gaps, gap_max, dead, dup, sketch, p50, p99 in tc.sql(
            "SELECT device_id, (extract(epoch FROM bucket) / 60)::bigint, " + FIGURES +
            " FROM quality_1m"):
        devices[(device, minute)] = {"readings": n, "n": list(present), "late": late, "ooo": ooo,
                                     "gaps": gaps, "gap_max": gap_max, "dead": dead, "dup": dup,
                                     "sketch": sketch, "p50": p50, "p99": p99}
    fleet = {}
    for minute, n, present, late, ooo, gaps, gap_max, dead, dup, sketch, p50, p99, ndev in tc.sql(
            "SELECT (extract(epoch FROM bucket) / 60)::bigint, " + FIGURES + ", devices"
            " FROM quality_fleet_1m"):
        fleet[minute] = {"readings": n, "n": list(present), "late": late, "ooo": ooo,
                         "gaps": gaps, "gap_max": gap_max, "dead": dead, "dup": dup,
                         "devices": ndev, "sketch": sketch, "p50": p50, "p99": p99}
    reasons = {(m, r): n for m, r, n in tc.sql(
        "SELECT (extract(epoch FROM bucket) / 60)::bigint, reason, n FROM quality_dead_letters_1m")}
    return devices, fleet, reasons


def trimmed(sketch):
    """A sketch without its trailing empty buckets."""
    sketch = list(sketch)
    while sketch and not sketch[-1]:
        sketch.pop()
    return sketch


def assert_figures_match(tc):
    want_dev, want_fleet, want_reasons = expected_figures(tc)
    got_dev, got_fleet, got_reasons = stored_figures(tc)
    assert set(got_dev) == set(want_dev), sorted(set(got_dev) ^ set(want_dev))[:10]
    for key, want in want_dev.items():
        got = got_dev[key]
        for k in ("readings", "n", "late", "ooo", "gaps", "dead", "dup"):
            assert got[k] == want[k], (key, k, got[k], want[k])
        if want["gap_max"] is None:
            assert got["gap_max"] is None, (key, got["gap_max"])
        else:
            assert abs(got["gap_max"] - want["gap_max"]) < 1e-6, (key, got, want)
        if want["readings"]:
            # One delay a reading, and the stored quantiles are the sketch's.
            assert sum(got["sketch"]) == want["readings"], (key, got["sketch"])
            assert abs(got["p50"] - quantile(got["sketch"], 0.5)) < 1e-9, (key, got)
            assert abs(got["p99"] - quantile(got["sketch"], 0.99)) < 1e-9, (key, got)
    assert set(got_fleet) == set(want_fleet), sorted(set(got_fleet) ^ set(want_fleet))[:10]
    for minute, want in want_fleet.items():
        got = got_fleet[minute]
        for k in ("readings", "n", "late", "ooo", "gaps", "dead", "dup", "devices"):
            assert got[k] == want[k], (minute, k, got[k], want[k])
        if want["readings"]:
            # Sketches are stored up to their last bucket that counts: a missing bucket is 0.
            sketches = [d["sketch"] for (dv, m), d in got_dev.items() if m == minute and d["sketch"]]
            want_sketch = [sum(col) for col in itertools.zip_longest(*sketches, fillvalue=0)]
            assert trimmed(got["sketch"]) == trimmed(want_sketch), minute
    assert got_reasons == want_reasons
    # No zeros are stored before a device minute's first delay (a backfill's sit ~90 buckets on).
    padded = tc.sql("SELECT device_id, bucket, array_lower(delay_sketch, 1) FROM quality_1m"
                    " WHERE readings > 0 AND delay_sketch[array_lower(delay_sketch, 1)] = 0")
    assert not padded, padded[:5]
    return want_dev, want_fleet


def wait_quality_caught_up(tc, timeout=180):
    """The quality marks reach the store's."""
    def done():
        store = dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets"
                            " WHERE group_id = %s", (tc.group,)))
        mine = dict(tc.sql("SELECT partition, next_offset FROM quality_offsets"))
        return store and store == mine
    return wait_for(done, timeout=timeout)


def test_quality_figures_equal_an_independent_computation(tc):
    tc.partitions = 3
    tc.migrate()
    tc.simulate("--devices", "12", "--count", str(12 * 1100), "--seed", "11", "--invalid-ratio",
                "0.03", "--anomalies", "late=0.02,ooo=0.01,silent=0.005")
    tc.run(extra=quality_settings())
    assert wait_quality_caught_up(tc)
    want_dev, want_fleet = assert_figures_match(tc)
    # The data had all of it: the comparison is not of zeros.
    total = lambda k: sum(r[k] for r in want_fleet.values())
    assert total("readings") > 12000 and total("late") > 0 and total("ooo") > 0
    assert total("gaps") > 0 and total("dead") > 0
    assert min(r["n"][0] for r in want_dev.values() if r["readings"]) >= 0
    # `quality summary` reads the same tables.
    out = tc.cmd("quality", "summary", "--since", "30d").stdout
    assert f"{total('readings')} readings from 12 devices" in out, out


def reading(device, i, temperature, humidity=None):
    doc = {"device_id": device, "timestamp": (BASE_US + i * CADENCE_US) // 1000,
           "temperature": temperature}
    if humidity is not None:
        doc["humidity"] = humidity
    return json.dumps(doc).encode()


def produce(tc, messages):
    p = Producer({"bootstrap.servers": tc.brokers})
    for device, payload in messages:
        p.produce(tc.topic, value=payload, key=device.encode(), partition=0)
    assert p.flush(60) == 0


def hot(i):
    """r-1: too hot (> 30) for readings 10..19 (100 s: fires), 30 (10 s: never), 40..159 (open
    across the restart, cleared at 160)."""
    return 40.0 + (i % 3) * 0.1 if 10 <= i < 20 or i == 30 or 40 <= i < 160 else 20.0 + (i % 5) * 0.1


def stuck(i):
    """s-1's humidity: varying, then 33.3 for readings 100..159 (open across the restart)."""
    return 33.3 if 100 <= i < 160 else 50.0 + ((i * 7) % 13) * 0.1


def phase(lo, hi):
    out = []
    for i in range(lo, hi):
        out.append(("r-1", reading("r-1", i, hot(i))))
        out.append(("s-1", reading("s-1", i, 21.0 + ((i * 3) % 7) * 0.1, stuck(i))))
    return out


RULES = ("rules:\n"
         "  - name: too-hot\n"
         "    scope: {devices: \"r-*\"}\n"
         "    check: {range: {metric: temperature, max: 30}}\n"
         "    severity: critical\n"
         "    for: 30s\n")


def findings(tc, where):
    return tc.sql("SELECT device_id, metric, kind, rule, severity,"
                  " (extract(epoch FROM start_time) * 1000000)::bigint,"
                  " (extract(epoch FROM end_time) * 1000000)::bigint FROM anomalies WHERE " + where +
                  " ORDER BY start_time")


def t(i):
    return BASE_US + i * CADENCE_US


def test_rules_and_detectors_fire_and_resolve_once_across_a_kill_9(tc, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")  # the topic, with one partition: offsets give the order
    settings = quality_settings(f"quality.rules_file={rules}")
    produce(tc, phase(0, 130))
    proc = tc.spawn("run", extra=settings)
    try:
        # Both findings open: the rule's since reading 40, the stuck detector's since 100.
        assert wait_for(lambda: findings(tc, "rule = 'too-hot' AND end_time IS NULL"), timeout=180)
        assert wait_for(lambda: findings(tc, "kind = 'stuck' AND device_id = 's-1'"
                                             " AND end_time IS NULL"), timeout=180)
    finally:
        proc.kill()  # kill -9: nothing is flushed on the way out
        _, err = proc.communicate(timeout=60)
    tc.assert_clean(err)
    produce(tc, phase(130, 200))
    tc.run(extra=settings)
    assert wait_quality_caught_up(tc)

    rule_rows = findings(tc, "rule = 'too-hot'")
    assert rule_rows == [("r-1", "temperature", "range", "too-hot", "critical", t(10), t(20)),
                         ("r-1", "temperature", "range", "too-hot", "critical", t(40), t(160))]
    stuck_rows = findings(tc, "kind = 'stuck' AND device_id = 's-1' AND metric = 'humidity'")
    assert len(stuck_rows) == 1, stuck_rows
    assert stuck_rows[0][5] == t(100) and stuck_rows[0][6] == t(159), stuck_rows
    # Figures: nothing lost or counted twice by the kill.
    assert_figures_match(tc)
    out = json.loads(tc.cmd("quality", "anomalies", "--format", "json", "--device", "r-1").stdout)
    assert [(a["rule"], a["status"]) for a in out if a["rule"]] == [("too-hot", "resolved")] * 2
    assert tc.cmd("quality", "anomalies", "--open", "--device", "r-1").stdout.count("too-hot") == 0


def located(i):
    """g-1: a steady temperature; a latitude that varies, then holds 52.506 (one of its values: no
    level shift) for readings 100..159."""
    lat = 52.506 if 100 <= i < 160 else 52.5 + ((i * 7) % 13) * 0.001
    doc = {"device_id": "g-1", "timestamp": t(i) // 1000, "temperature": 21.0 + ((i * 3) % 7) * 0.1,
           "latitude": lat, "longitude": 13.4}
    return ("g-1", json.dumps(doc).encode())


def test_the_coordinates_are_watched_only_when_asked(tc):
    """quality.detect_location=true: a latitude held still is a stuck finding. A run without it
    (the default) resolves that finding at the latitude's last reading it was fed, opens none on
    the coordinates, and still counts their completeness."""
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    produce(tc, [located(i) for i in range(0, 130)])
    tc.run(extra=quality_settings("quality.detect_location=true"))
    assert wait_quality_caught_up(tc)
    assert findings(tc, "metric = 'latitude'") == [
        ("g-1", "latitude", "stuck", None, "warning", t(100), None)]
    produce(tc, [located(i) for i in range(130, 200)])
    proc = tc.run(extra=quality_settings())
    assert wait_quality_caught_up(tc)
    assert "open findings of the coordinates resolved: 1 " in proc.stderr, proc.stderr[-4000:]
    # Resolved where the series stopped being fed (reading 129), not where the run ended (159).
    assert findings(tc, "metric IN ('latitude', 'longitude')") == [
        ("g-1", "latitude", "stuck", None, "warning", t(100), t(129))]
    assert tc.sql("SELECT sum(readings), sum(latitude_n), sum(longitude_n) FROM quality_1m") == [
        (200, 200, 200)]


def in_one_minute(devices, seconds):
    """Readings of `devices` at BASE_US + s seconds for s in `seconds`: all in one minute."""
    return [(d, json.dumps({"device_id": d, "timestamp": (BASE_US + s * 1_000_000) // 1000,
                            "temperature": 20.0 + s * 0.01}).encode())
            for s in seconds for d in devices]


def quantile_calls(tc):
    """Calls of the SQL sketch functions PostgreSQL made for this schema (track_functions)."""
    calls = dict(tc.sql("SELECT funcname, calls FROM pg_stat_user_functions"
                        " WHERE schemaname = %s", (tc.schema,)))
    return calls.get("tc_quality_sketch_quantile", 0), calls.get("tc_quality_sketch_add", 0)


@pytest.mark.parametrize("timescaledb", ["off", pytest.param("on", marks=pytest.mark.skipif(
    not TIMESCALE_USABLE, reason=TIMESCALE_WHY))])
def test_a_minute_written_in_parts_takes_its_quantiles_from_the_parts(tc, monkeypatch,
                                                                      timescaledb):
    """A device's minute written in two flushes of one run: the second part's statement takes the
    quantiles of both parts from the document instead of summing and ranking the sketches in SQL
    (fewer calls of the SQL quantile than devices: only the fleet's rows call it). After a restart
    the same minute's third part meets a row this run did not write: it is summed in SQL (one call
    a device and quantile at least). The figures are exact throughout, quality_1m a plain table or
    a hypertable."""
    devices = [f"p-{k:03d}" for k in range(200)]
    mode = f"postgres.timescaledb={timescaledb}"
    monkeypatch.setenv("PGOPTIONS", "-c track_functions=all")
    tc.partitions = 1
    tc.cmd("migrate", extra=(mode,))
    tc.simulate("--count", "0")
    produce(tc, in_one_minute(devices, range(0, 10)))
    proc = tc.spawn("run", extra=quality_settings(mode))
    try:
        assert wait_quality_caught_up(tc)
        produce(tc, in_one_minute(devices, range(10, 20)))
        assert wait_for(lambda: store_has(tc, 200 * 20), timeout=180)
        assert wait_quality_caught_up(tc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    tc.assert_clean(err)
    # The fleet's minute was written in two parts at least, so the writer's statistics are in
    # once the SQL sum was called for it (its backend reports them by its exit at the latest).
    assert wait_for(lambda: quantile_calls(tc)[1] > 0, timeout=60)
    first, _ = quantile_calls(tc)
    assert first < len(devices), first
    assert tc.sql("SELECT count(*), min(readings) FROM quality_1m") == [(200, 20)]
    assert_figures_match(tc)

    produce(tc, in_one_minute(devices, range(20, 30)))
    tc.run(extra=quality_settings(mode))
    assert wait_quality_caught_up(tc)
    assert wait_for(lambda: quantile_calls(tc)[0] >= first + 2 * len(devices), timeout=60)
    assert tc.sql("SELECT count(*), min(readings), max(readings) FROM quality_1m") == [(200, 30, 30)]
    assert_figures_match(tc)


def ten_devices(tc, prefix):
    """Ten devices of 30 readings in one partition, a run: its checkpoint is whole (every device
    changed)."""
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    devices = [f"{prefix}-{k}" for k in range(10)]
    produce(tc, [(d, reading(d, i, 20.0 + (i % 5) * 0.1)) for i in range(30) for d in devices])
    tc.run(extra=quality_settings())
    assert wait_quality_caught_up(tc)
    return devices


def more(tc, devices, steps):
    """Readings `steps` of `devices`, and a run (never quiet long enough for a silence: the
    detectors of the devices left out do not change)."""
    produce(tc, [(d, reading(d, i, 20.0 + (i % 5) * 0.1)) for i in steps for d in devices])
    tc.run(extra=quality_settings())
    assert wait_quality_caught_up(tc)


def whole(tc, group):
    return tc.sql("SELECT detector_state FROM quality_offsets WHERE group_id = %s", (group,))[0][0]


def test_a_checkpoint_writes_only_the_devices_that_changed(tc):
    """The first flush writes the whole checkpoint (all ten devices changed); a run in which two
    devices report writes exactly their two records to quality_detector_state and leaves the whole
    checkpoint as it was; a run in which all report writes it whole again and deletes the
    records (they would be older than it)."""
    devices = ten_devices(tc, "c")
    first = whole(tc, tc.group)
    assert first is not None
    assert tc.sql("SELECT count(*) FROM quality_detector_state") == [(0,)]
    more(tc, devices[:2], range(30, 31))
    assert sorted(d for (d,) in tc.sql("SELECT device_id FROM quality_detector_state")) == \
        devices[:2]
    assert whole(tc, tc.group) == first
    more(tc, devices, range(31, 34))
    assert tc.sql("SELECT count(*) FROM quality_detector_state") == [(0,)]
    assert whole(tc, tc.group) != first


def test_a_lane_opens_from_its_whole_checkpoint_and_its_records(tc):
    """Detectors restarted from a whole checkpoint plus two devices' records end in exactly the
    state (byte for byte) of detectors that read the same partition in one run (another group:
    its store writes the readings again, which nothing here reads)."""
    devices = ten_devices(tc, "o")
    more(tc, devices[:2], range(30, 31))
    assert tc.sql("SELECT count(*) FROM quality_detector_state") == [(2,)]
    more(tc, devices, range(31, 34))  # opened from both; all changed: written whole
    other = f"{tc.group}-one-run"
    tc.run(extra=quality_settings(f"kafka.group={other}"))
    assert wait_for(lambda: tc.sql("SELECT next_offset FROM quality_offsets WHERE group_id = %s",
                                   (other,)) == [(10 * 30 + 2 + 10 * 3,)], timeout=180)
    assert whole(tc, other) == whole(tc, tc.group)

def test_the_ingest_role_may_write_the_checkpoint(tc):
    """thermocline_ingest (the pipeline's least-privilege role) may upsert and delete the
    detectors' records and write the whole checkpoint with the mark, as a flush does."""
    tc.migrate()
    s = tc.schema
    statements = [
        f"INSERT INTO \"{s}\".quality_detector_state (group_id, topic, partition, device_id, state)"
        " VALUES ('g', 't', 0, 'd', '\\x00') ON CONFLICT (group_id, topic, partition, device_id)"
        " DO UPDATE SET state = EXCLUDED.state",
        f"DELETE FROM \"{s}\".quality_detector_state WHERE group_id = 'g' AND topic = 't'"
        " AND partition = 0",
        f"INSERT INTO \"{s}\".quality_offsets (group_id, topic, partition, next_offset,"
        " watermark_us, detector_state) VALUES ('g', 't', 0, 5, 0, NULL) ON CONFLICT DO NOTHING",
        f"UPDATE \"{s}\".quality_offsets SET next_offset = 6, detector_state = '\\x00'"
        " WHERE group_id = 'g' AND next_offset = 5",
    ]
    with as_role(tc, "thermocline_ingest") as conn:
        for sql in statements:
            conn.execute(sql)


def store_has(tc, n):
    return tc.sql("SELECT count(*) FROM readings")[0][0] >= n


def quality_write_waiting(tc):
    """A statement of the quality sink waits for a lock on quality_offsets."""
    return tc.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                  " AND query LIKE %s", (f'%"{tc.schema}".quality_offsets%',))[0][0] > 0


def test_a_quality_flush_stalled_by_a_lock_does_not_stall_the_pipeline(tc):
    """The flush's transaction runs on the sink's writer thread: while PostgreSQL holds it on a
    lock, the pipeline thread goes on consuming and the store goes on storing; once the lock
    goes, the quality figures catch up, exact."""
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    produce(tc, phase(0, 50))
    proc = tc.spawn("run", extra=quality_settings())
    try:
        assert wait_quality_caught_up(tc)
        with psycopg.connect(tc.dsn) as locker:  # a transaction, held open
            locker.execute(f'LOCK TABLE "{tc.schema}".quality_offsets IN EXCLUSIVE MODE')
            produce(tc, phase(50, 100))
            assert wait_for(lambda: store_has(tc, 200), timeout=180)
            # The next quality flush is under way, stuck behind the lock...
            assert wait_for(lambda: quality_write_waiting(tc), timeout=180)
            # ...and readings produced now are still consumed and stored.
            produce(tc, phase(100, 150))
            assert wait_for(lambda: store_has(tc, 300), timeout=180)
            assert quality_write_waiting(tc)
            locker.rollback()
        assert wait_quality_caught_up(tc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    tc.assert_clean(err)
    assert_figures_match(tc)


def test_exit_when_idle_waits_for_the_quality_figures_of_a_killed_member(tc):
    """A member killed with its quality flush held by a lock leaves the store and the rollups
    whole and the quality figures behind. The next `run --exit-when-idle` has no partition until
    the killed member's session ends: it must not take the other sinks' being whole for the
    quality sink's (the sink's stored callback), but wait, take the partition over and write the
    figures before it exits."""
    settings = ("pipeline.sinks=store,rollups,quality", "quality.flush_interval_ms=300")
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    produce(tc, phase(0, 100))
    with psycopg.connect(tc.dsn) as locker:
        locker.execute(f'LOCK TABLE "{tc.schema}".quality_offsets IN EXCLUSIVE MODE')
        proc = tc.spawn("run", extra=settings)
        try:
            # The store's and the rollups' marks at the end; the quality flush stuck.
            assert wait_for(lambda: [n for _, n in tc.sql(
                "SELECT group_id, next_offset FROM ingest_offsets")] == [200, 200], timeout=180)
            assert wait_for(lambda: quality_write_waiting(tc), timeout=180)
        finally:
            proc.kill()  # kill -9, its quality flush not committed
            proc.communicate(timeout=60)
        locker.rollback()
    assert tc.sql("SELECT count(*) FROM quality_offsets")[0][0] == 0
    tc.run(extra=settings)
    # Right at its exit, not after a wait: the quality marks are where the store's are.
    assert dict(tc.sql("SELECT partition, next_offset FROM quality_offsets")) == {0: 200}
    assert_figures_match(tc)


def test_a_malformed_rules_file_on_sighup_is_refused_and_fleet_figures_on_metrics(tc, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    port = free_port()
    proc = tc.spawn("run", extra=quality_settings(f"quality.rules_file={rules}",
                                                  f"http.listen=127.0.0.1:{port}"))
    try:
        assert wait_for(lambda: _up(port))
        produce(tc, phase(0, 5))
        assert wait_for(lambda: metrics(port).get("thermocline_quality_readings_total") == 10,
                        timeout=120)
        rules.write_text(RULES + "  - name: broken\n    check: {range: {metric: temperature,"
                                 " maxx: 3}}\n")
        proc.send_signal(signal.SIGHUP)
        refused = 'thermocline_quality_rules_reloads_total{result="refused"}'
        assert wait_for(lambda: metrics(port).get(refused) == 1, timeout=60)
        # The running rules are in force: too-hot still fires.
        produce(tc, phase(5, 30))
        assert wait_for(lambda: findings(tc, "rule = 'too-hot'"), timeout=120)
        # The counters move when the monitor takes the outcome of its writer's commit, a moment
        # after the finding is visible in PostgreSQL.
        opened = 'thermocline_quality_findings_opened_total{kind="range",source="rule"}'
        assert wait_for(lambda: metrics(port).get(opened) == 1, timeout=60)
        m = metrics(port)
        assert m["thermocline_quality_readings_total"] == 60
        assert m['thermocline_quality_findings_opened_total{kind="range",source="rule"}'] == 1
        assert m["thermocline_quality_devices"] == 2
        # Bounded labels: kind, source, reason, quantile, result; never a device.
        _, body = __import__("test_observe").get(port, "/metrics")
        labels = {part.split("=")[0] for line in body.splitlines()
                  if line.startswith("thermocline_quality_") and "{" in line
                  for part in line[line.index("{") + 1:line.index("}")].split(",")}
        assert labels <= {"kind", "source", "reason", "quantile", "result"}, labels
        # A valid file is taken.
        rules.write_text(RULES.replace("max: 30", "max: 35"))
        proc.send_signal(signal.SIGHUP)
        accepted = 'thermocline_quality_rules_reloads_total{result="accepted"}'
        assert wait_for(lambda: metrics(port).get(accepted) == 1, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    tc.assert_clean(err)
    # FILE:LINE:COL of the unknown key, in the log line that refuses the file.
    # (The log is JSON: its quotes are escaped.)
    assert f'{rules}:8:42: rule \\"broken\\": unknown key \\"maxx\\"' in err, err[-3000:]
    assert "rules not reloaded, the running ones stay in force" in err


def test_a_quality_flush_is_never_compiled(tc, monkeypatch):
    """A flush's statements run without JIT: the fleet's device count is priced past
    jit_above_cost, and compiling it took 80-220 ms of a 100-340 ms statement (docs/quality.md,
    "What a flush costs PostgreSQL"). Every connection of the run gets every JIT threshold at 0 and
    auto_explain's plans as notices (libpq prints the writer's on stderr): the quality statements'
    plans are there, and none of them was compiled, where a plain statement with the same settings
    is -- so the check can fail."""
    jit = ("-c jit=on -c jit_above_cost=0 -c jit_inline_above_cost=0"
           " -c jit_optimize_above_cost=0")
    explain = ("-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
               " -c auto_explain.log_format=json -c auto_explain.log_level=notice")
    plans = []
    with psycopg.connect(tc.dsn, autocommit=True, options=f"{jit} {explain}") as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary))
        conn.execute("SELECT sum(x) FROM generate_series(1, 10) x").fetchall()
    if not any('"JIT"' in p for p in plans if "generate_series" in p):
        pytest.skip("this server has no JIT provider")
    monkeypatch.setenv("PGOPTIONS", f"{jit} {explain}")
    tc.partitions = 2
    tc.migrate()
    tc.simulate("--devices", "20", "--count", str(20 * 60), "--seed", "5")
    err = tc.run(extra=quality_settings()).stderr
    assert wait_quality_caught_up(tc)
    monkeypatch.delenv("PGOPTIONS")
    quality = [p for p in err.split("NOTICE:")
               if "quality_row[]" in p or "quality_new_row[]" in p or "quality_fleet_1m" in p]
    assert any("quality_1m" in p for p in quality), err[-4000:]
    assert any("SET devices" in p for p in quality), err[-4000:]
    assert not [p for p in quality if '"JIT"' in p], [p[:400] for p in quality if '"JIT"' in p]
    assert_figures_match(tc)
