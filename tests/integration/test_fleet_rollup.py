"""api.fleet's hours in plain mode: the closed ones from rollup_tag_1h (schema version 7), one row
per site, tag, value and hour, written by the closing in the transaction that writes rollup_1h,
and moved by whatever changes a closed hour of rollup_1h later (a late reading's flush); the open
ones (from H on) from rollup_tag_open (version 9), their closed minutes (before W) kept alike from
rollup_1m. The readings past W are in no hour of fleet(). An hour counts toward the tags its
device had when the hour closed; an open hour toward those recorded when the one before closed.
Every figure is compared with the raw readings before W, grouped by those tags in Python, for an
analyst who sees every site and for viewers who see one."""

import json
import signal
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import psycopg

from api_data import as_role
from test_rollup_close import produce
from test_store import assert_derived_exact, plain  # noqa: F401
from waits import wait_for

ALL = json.dumps({"sub": "root", "sites": "*"})
MINUTE_MS = 60000


def hour_start():
    now = datetime.now(timezone.utc)
    return now.replace(minute=0, second=0, microsecond=0)


def backfill(tc, first_hour, hours, devices, tags_of, step_min=5):
    """Readings of devices over hours from first_hour on, one every step_min minutes each."""
    start_ms = int(first_hour.timestamp() * 1000)
    docs = []
    for k in range(hours * 60 // step_min):
        for i in range(devices):
            docs.append({"device_id": f"dev-{i:02d}", "timestamp": start_ms + k * step_min * MINUTE_MS + i * 7000,
                         "temperature": 10 + i + k * 0.5, "humidity": 30 + k % 7, "tags": tags_of(i)})
    produce(tc, docs)
    return docs


def closed_mark(tc):
    """H (None while it is -infinity: nothing closed yet)."""
    return tc.sql("SELECT CASE WHEN isfinite(materialized_1h) THEN materialized_1h END FROM rollup_state")[0][0]


def expected(tc, tag, sites, tags_closed, h1):
    """fleet(tag, ..., '1h') from the readings before W: a device's hour counts toward
    tags_closed[device] when it was closed by the first run (before h1), toward the tags
    device_tag_history records for it at the hour otherwise; a caller with sites (None: all) sees
    the hours whose site is among them."""
    w = tc.sql("SELECT materialized_1m FROM rollup_state")[0][0]
    history = tc.sql("SELECT device_id, CASE WHEN isfinite(since) THEN since END, tags"
                     " FROM device_tag_history ORDER BY since")  # None: -infinity

    def tags_at(dev, bucket):
        return [t for d, since, t in history if d == dev and (since is None or since <= bucket)][-1]

    groups = defaultdict(lambda: {"devices": set(), "n": 0, "t": [], "h": []})
    for dev, bucket, temp, hum in tc.sql("SELECT device_id, date_trunc('hour', time), temperature,"
                                         " humidity FROM readings WHERE time < %s", (w,)):
        tags = tags_closed[dev] if bucket < h1 else tags_at(dev, bucket)
        if sites is not None and tags.get("site") not in sites:
            continue
        g = groups[(tags.get(tag), bucket)]
        g["devices"].add(dev)
        g["n"] += 1
        g["t"] += [temp] if temp is not None else []
        g["h"] += [hum] if hum is not None else []
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {k: (len(g["devices"]), g["n"], mean(g["t"]), mean(g["h"])) for k, g in groups.items()}


def fleet(tc, role, claims, tag, first_hour, value=None):
    with as_role(tc, role, claims) as conn:
        got = conn.execute(
            f'SELECT tag_value, bucket, devices, n, temperature_avg, humidity_avg FROM "{tc.api_schema}".fleet('
            "%s, %s, now() + interval '1 hour', '1h', %s)", (tag, first_hour, value)).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in got}


def assert_fleet_is(got, want, what):
    assert set(got) == set(want), (what, sorted(set(got) ^ set(want), key=str)[:6])
    for key, (devices, n, t, h) in want.items():
        g = got[key]
        assert g[:2] == (devices, n), (what, key, g, want[key])
        for got_mean, want_mean in ((g[2], t), (g[3], h)):
            assert (got_mean is None) == (want_mean is None), (what, key, g, want[key])
            assert want_mean is None or abs(got_mean - want_mean) < 1e-9 * max(1, abs(want_mean)), (what, key, g)


CALLERS = [("thermocline_analyst", ALL, None),
           ("thermocline_viewer", json.dumps({"sub": "v1", "sites": ["s1"]}), {"s1"}),
           ("thermocline_viewer", json.dumps({"sub": "v2", "sites": ["s2", "elsewhere"]}), {"s2"})]


def test_closed_hours_equal_the_readings_by_the_tags_of_their_hour(plain):
    """Three hours of 13 devices on three sites (one without a site) are closed by the run's stop;
    then one device moves from site s1 to s2: its new readings (past W) are in no hour yet, and a
    late reading for one of its closed hours -- carrying the new tags -- counts toward s1, where
    that hour was counted, moving the fleet figure exactly as it moves rollup_1h. For every (value, hour),
    per site and per model, for every caller: the figures of the readings themselves."""
    tc = plain
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    first = hour_start() - timedelta(hours=3)
    tags_of = lambda i: {"site": f"s{i % 3}", "model": f"m{i % 2}"} if i < 12 else {"model": "m0"}  # noqa: E731
    backfill(tc, first, 3, 13, tags_of)
    tc.run(idle=2)
    h1 = closed_mark(tc)
    assert h1 >= first + timedelta(hours=2), h1  # the first two hours at least are closed
    tags_closed = dict(tc.sql("SELECT device_id, tags FROM latest_state"))
    assert tc.sql("SELECT count(*) FROM rollup_tag_1h WHERE bucket < %s", (h1,))[0][0] > 0
    for role, claims, sites in CALLERS:
        for tag in ("site", "model"):
            assert_fleet_is(fleet(tc, role, claims, tag, first), expected(tc, tag, sites, tags_closed, h1),
                            (role, sites, tag))

    # dev-01 moves to s2; one late reading for its second hour, closed as s1's.
    late_hour = first + timedelta(hours=1)
    before_1h = tc.sql("SELECT n, temperature_sum FROM rollup_1h WHERE device_id = 'dev-01' AND bucket = %s",
                       (late_hour,))[0]
    before = fleet(tc, "thermocline_analyst", ALL, "site", first)[("s1", late_hour)]
    now_ms = int(time.time() * 1000)
    moved = {"site": "s2", "model": "m1"}
    produce(tc, [{"device_id": "dev-01", "timestamp": now_ms - k * 1000, "temperature": 50.0 + k, "humidity": 33,
                  "tags": moved} for k in range(3)]
            + [{"device_id": "dev-01", "timestamp": int(late_hour.timestamp() * 1000) + 31 * MINUTE_MS,
                "temperature": 99.0, "humidity": 31, "tags": moved}])
    tc.run(idle=2)
    after_1h = tc.sql("SELECT n, temperature_sum FROM rollup_1h WHERE device_id = 'dev-01' AND bucket = %s",
                      (late_hour,))[0]
    assert (after_1h[0] - before_1h[0], after_1h[1] - before_1h[1]) == (1, 99.0)
    after = fleet(tc, "thermocline_analyst", ALL, "site", first)[("s1", late_hour)]
    assert (after[0], after[1]) == (before[0], before[1] + 1)  # the same devices, one reading more
    # The mean moved by the reading: (old sum + 99) / (old n + 1).
    assert abs(after[2] - (before[2] * before[1] + 99.0) / (before[1] + 1)) < 1e-9
    assert_derived_exact(tc)
    for role, claims, sites in CALLERS:
        for tag in ("site", "model"):
            assert_fleet_is(fleet(tc, role, claims, tag, first), expected(tc, tag, sites, tags_closed, h1),
                            (role, sites, tag))
    # The viewer of s1 sees dev-01's closed hours (it was there) but not its new readings.
    s1 = fleet(tc, "thermocline_viewer", CALLERS[1][1], "site", first)
    assert {k[0] for k in s1} == {"s1"}
    # value= reads one value's rows: the same as the whole tag's of that value.
    for role, claims, _ in CALLERS:
        every = fleet(tc, role, claims, "site", first)
        one = fleet(tc, role, claims, "site", first, value="s1")
        assert one == {k: v for k, v in every.items() if k[0] == "s1"}, role


def test_a_closing_killed_halfway_writes_each_hour_once(plain):
    """The closing's statement is held inside rollup_1h's trigger (its table locked by the test)
    when the pipeline is killed (-9) and its backend terminated: nothing of it stays -- no hour in
    rollup_1h, none in rollup_tag_1h, H where it was. The next run closes every hour once: each
    row of rollup_tag_1h inserted and never updated, its figures those of the readings."""
    tc = plain
    tc.migrate()
    tc.simulate("--count", "0")
    first = hour_start() - timedelta(hours=3)
    backfill(tc, first, 2, 8, lambda i: {"site": f"s{i % 2}", "rack": str(i % 3)}, step_min=10)
    assert closed_mark(tc) is None
    with psycopg.connect(tc.dsn) as locker:
        locker.execute(f'LOCK TABLE "{tc.schema}".rollup_tag_1h IN SHARE MODE')
        proc = tc.spawn("run", "--exit-when-idle", "2")
        try:
            def closing_waits():
                got = tc.sql("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                             " AND query LIKE %s", (f"%{tc.schema}%tc_rollup_materialize%",))
                return got[0][0] if got else None
            pid = wait_for(closing_waits, timeout=180, what="the closing held in rollup_1h's trigger", proc=proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        tc.sql("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(lambda: not tc.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)), timeout=60,
                 what="the closing's backend gone")
        locker.rollback()
    assert tc.sql("SELECT count(*) FROM rollup_1h")[0][0] == 0
    assert tc.sql("SELECT count(*) FROM rollup_tag_1h")[0][0] == 0
    assert closed_mark(tc) is None
    # A run closes at its stop what it has aggregated: one reading of now gives it something.
    produce(tc, [{"device_id": "dev-00", "timestamp": int(time.time() * 1000), "temperature": 1.0,
                  "tags": {"site": "s0", "rack": "0"}}])
    tc.run(idle=2)
    h1 = closed_mark(tc)
    assert h1 >= first + timedelta(hours=2), h1
    assert_derived_exact(tc)
    ins, upd, live = tc.sql("SELECT n_tup_ins, n_tup_upd, n_live_tup FROM pg_stat_user_tables"
                            " WHERE schemaname = current_schema() AND relname = 'rollup_tag_1h'")[0]
    rows = tc.sql("SELECT count(*) FROM rollup_tag_1h")[0][0]
    assert upd == 0 and rows > 0, (ins, upd, live, rows)
    tags = dict(tc.sql("SELECT device_id, tags FROM latest_state"))
    for role, claims, sites in CALLERS:
        for tag in ("site", "rack"):
            want = {k: v for k, v in expected(tc, tag, sites, tags, h1).items() if k[1] < h1}
            got = {k: v for k, v in fleet(tc, role, claims, tag, first).items() if k[1] < h1}
            assert_fleet_is(got, want, (role, sites, tag))


def test_open_hours_hold_their_closed_minutes_by_tag(plain):
    """The open hour (from H on) holds its closed minutes (before W) from rollup_tag_open: with
    the closing held ten minutes before this hour (postgres.rollup_close_after_ms), the last hour
    is open with fifty minutes closed and the readings since are past W. Every figure equals the
    readings' before W, for every caller and tag; the ones past W are in none. A late reading of a
    closed minute (an update of rollup_1m) and a new device's (an insert) move the hour, the device
    counted once; minutes deleted from rollup_1m (as a replay does) take their readings away, and
    their device once none of its minutes of the hour is left."""
    tc = plain
    tc.migrate()
    tc.simulate("--count", "0")
    now = datetime.now(timezone.utc)
    h = hour_start() - timedelta(hours=1)
    hold = lambda: f"postgres.rollup_close_after_ms={int((datetime.now(timezone.utc) - h).total_seconds() * 1000) - 50 * MINUTE_MS}"  # noqa: E731,E501
    tags_of = lambda i: {"site": f"s{i % 3}", "model": f"m{i % 2}"} if i < 6 else {"model": "m1"}  # noqa: E731
    tags = {f"dev-{i:02d}": tags_of(i) for i in range(7)}
    start_ms, end_ms = int(h.timestamp() * 1000), int(now.timestamp() * 1000)
    produce(tc, [{"device_id": dev, "timestamp": t, "temperature": 10 + i + (t - start_ms) / 1e6,
                  "humidity": 30 + i, "tags": tags[dev]}
                 for i, dev in enumerate(tags)
                 for t in range(start_ms + i * 3000, end_ms if i < 6 else start_ms + 10 * MINUTE_MS, 30000)])
    tc.run(idle=2, extra=(hold(),))
    w, h1 = tc.sql("SELECT materialized_1m, materialized_1h FROM rollup_state")[0]
    assert h1 == h and h + timedelta(minutes=45) <= w < h + timedelta(hours=1), (h1, w)
    assert tc.sql("SELECT count(*) FROM readings WHERE time >= %s", (w,))[0][0] > 100  # past W
    assert tc.sql("SELECT count(*) FROM rollup_tag_1h")[0][0] == 0  # no hour closed

    def check(what):
        for role, claims, sites in CALLERS:
            for tag in ("site", "model"):
                want = expected(tc, tag, sites, tags, h + timedelta(days=1))
                assert want, (what, role, tag)
                assert_fleet_is(fleet(tc, role, claims, tag, h), want, (what, role, sites, tag))

    check("closed minutes")
    # Late: dev-02 in a minute it has (update), dev-06 (its first ten minutes only) in one it has
    # not (insert, the device already counted), dev-09 in none of its own (insert, a new device).
    tags["dev-09"] = {"site": "s1", "model": "m2"}
    produce(tc, [{"device_id": "dev-02", "timestamp": start_ms + 5 * MINUTE_MS + 1000, "temperature": 77.0,
                  "humidity": 3, "tags": tags["dev-02"]},
                 {"device_id": "dev-06", "timestamp": start_ms + 30 * MINUTE_MS, "temperature": 6.0,
                  "humidity": 6, "tags": tags["dev-06"]},
                 {"device_id": "dev-09", "timestamp": start_ms + 7 * MINUTE_MS, "temperature": 5.0,
                  "humidity": 9, "tags": tags["dev-09"]}])
    before = fleet(tc, "thermocline_analyst", ALL, "site", h)[("s1", h)]
    tc.run(idle=2, extra=(hold(),))
    assert tc.sql("SELECT materialized_1m FROM rollup_state")[0][0] == w  # only the late path wrote
    after = fleet(tc, "thermocline_analyst", ALL, "site", h)[("s1", h)]
    assert after[:2] == (before[0] + 1, before[1] + 1), (before, after)  # dev-09, one reading
    check("late readings")
    # A replay's delete: every minute of dev-04 (s1) in the hour, and twenty of dev-05's (s2).
    for dev, upto in (("dev-04", w), ("dev-05", h + timedelta(minutes=20))):
        tc.sql("DELETE FROM rollup_1m WHERE device_id = %s AND bucket >= %s AND bucket < %s", (dev, h, upto))
        tc.sql("DELETE FROM readings WHERE device_id = %s AND time >= %s AND time < %s", (dev, h, upto))
    check("deleted minutes")
    assert_derived_exact(tc)  # rollup_tag_open against rollup_1m's minutes from H on, among the rest
    assert fleet(tc, "thermocline_analyst", ALL, "site", h)[("s1", h)][0] == \
        len([d for d in tags if d != "dev-04" and tags[d].get("site") == "s1"])


def test_a_sites_devices_come_from_the_tenant_tags_index(plain):
    """fleet()'s devices (its 1-minute path, and TimescaleDB mode) of one value of the tenant tag
    come through latest_state_site, an index of that tag made by the api's migration and made
    again on another expression when api.tenant_tag changes. With a value, of the tenant tag or of
    another, fleet(..., '1m') answers the rows the whole tag's answer has for that value."""
    tc = plain
    tc.migrate()

    def index():
        return tc.sql("SELECT pg_get_indexdef('latest_state_site'::regclass),"
                      " obj_description('latest_state_site'::regclass, 'pg_class')")[0]

    assert "'site'::text" in index()[0] and index()[1] == "tenant tag site", index()
    tc.cmd("migrate", extra=("api.tenant_tag=region",))
    assert "'region'::text" in index()[0] and index()[1] == "tenant tag region", index()
    tc.migrate()
    assert "'site'::text" in index()[0] and index()[1] == "tenant tag site", index()
    tc.simulate("--count", "0")
    backfill(tc, hour_start() - timedelta(hours=1), 1, 9, lambda i: {"site": f"s{i % 3}", "model": f"m{i % 2}"})
    tc.run(idle=2)
    for role, claims, _ in CALLERS:
        with as_role(tc, role, claims) as conn:
            def minutes(tag, value=None):
                return conn.execute(
                    f'SELECT * FROM "{tc.api_schema}".fleet(%s, now() - interval \'2 hours\', now(), \'1m\', %s)',
                    (tag, value)).fetchall()
            for tag, value in (("site", "s1"), ("model", "m0")):
                every = minutes(tag)
                assert every, (role, tag)
                assert minutes(tag, value) == [r for r in every if r[0] == value], (role, tag)
