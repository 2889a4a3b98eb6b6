"""Plain mode's closed buckets (store/sink_rollup.c, ddl.c tc_rollup_materialize): the rollup
tables hold the buckets before rollup_state's marks, each written once by a set-based statement
over the stored readings; the views compute the open ones; readings that arrive for a closed
bucket are added to it by the rollups' upserts. Every check compares with the readings
themselves: the tables for the closed buckets, the views for all of them."""

import json
import signal
import time

from confluent_kafka import Producer

from test_store import assert_closed_buckets_exact, assert_derived_exact, plain  # noqa: F401
from waits import wait_for


def table_writes(tc):
    """Rows inserted and updated in each rollup table since the schema was made (rollup_1m's are
    its days' partitions')."""
    return {r[0]: (r[1], r[2]) for r in tc.sql(
        "SELECT coalesce(i.inhparent::regclass::text, relname), sum(n_tup_ins)::int,"
        " sum(n_tup_upd)::int FROM pg_stat_user_tables s LEFT JOIN pg_inherits i ON i.inhrelid = s.relid"
        " WHERE schemaname = current_schema() AND (relname = 'rollup_1h'"
        " OR i.inhparent = 'rollup_1m'::regclass) GROUP BY 1")}


def marks(tc):
    """rollup_state, as seconds before now (W, H)."""
    return tc.sql("SELECT extract(epoch FROM now() - materialized_1m)::float8,"
                  " extract(epoch FROM now() - materialized_1h)::float8 FROM rollup_state")[0]


def produce(tc, docs):
    p = Producer({"bootstrap.servers": tc.brokers})
    for doc in docs:
        p.produce(tc.topic, json.dumps(doc).encode(), key=doc["device_id"].encode())
    assert p.flush(30) == 0


def test_a_backfill_is_closed_once_and_late_readings_are_added(plain):
    """100 minutes of readings of 200 devices (one a minute each), flushed after every batch: while the backlog is
    read its buckets stay open (the flushes write nothing to the tables); the stop closes every
    minute that ended 30 s ago in one statement, and the hours before the last one from those
    minutes: each bucket inserted once, none updated. Readings that then arrive for closed
    buckets (a device's late upload, a new metric among them) are added to them by upserts."""
    tc = plain
    tc.migrate()
    # Three hours ago on: a backlog from its first reading to its last.
    start = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(time.time() - 3 * 3600))
    tc.simulate("--devices", "200", "--count", "20000", "--cadence-ms", "60000", "--seed", "41",
                "--start", start)
    tc.run(idle=2, extra=("postgres.rollup_interval_ms=0", "pipeline.batch_size=500"))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 20000
    w_age, h_age = marks(tc)
    assert 30 <= w_age < 150, w_age
    assert h_age >= w_age and h_age < 3600 + 150, h_age
    assert_derived_exact(tc)
    (n1m, n1h) = (tc.sql(f"SELECT count(*) FROM {t}")[0][0] for t in ("rollup_1m", "rollup_1h"))
    assert n1m > 18000 and n1h >= 200, (n1m, n1h)
    # Written once each: the sink's flushes (40 of them) added nothing, the closing inserted.
    assert table_writes(tc) == {"rollup_1m": (n1m, 0), "rollup_1h": (n1h, 0)}

    # Late readings: 300 of them, 2 h to 2 h 50 min old (inside the backlog's span), some with
    # co2 (a new metric), for known devices and a new one.
    now_ms = int(time.time() * 1000)
    docs = [{"device_id": f"sensor-{i % 7:05d}" if i % 10 else "late-device",
             "timestamp": now_ms - 120 * 60000 - i * 10000, "temperature": 10 + i * 0.25,
             **({"co2": 400.5 + i} if i % 3 == 0 else {})} for i in range(300)]
    produce(tc, docs)
    tc.run(idle=2)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 20300
    assert_derived_exact(tc)
    assert tc.sql("SELECT sum(co2_n), sum(n) FILTER (WHERE device_id = 'late-device')"
                  " FROM rollup_1h_live") == [(100, 30)]
    # The sensors' late readings fell in buckets the tables held: added to them.
    assert all(upd > 0 for _, upd in table_writes(tc).values()), table_writes(tc)


def test_a_day_without_its_rollup_partition_gets_one(plain):
    """rollup_1m's partitions of today and yesterday dropped by hand (readings' kept): the
    pipeline makes them again before a row of theirs comes (with the readings' day, by the
    closing, by the rollups' flush), and nothing is lost."""
    tc = plain
    tc.migrate()
    days = [time.strftime("%Y%m%d", time.gmtime(time.time() - k * 86400)) for k in (0, 1)]
    for day in days:
        tc.sql(f"DROP TABLE rollup_1m_p{day}")
    start = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(time.time() - 3 * 3600))
    tc.simulate("--devices", "50", "--count", "2000", "--cadence-ms", "60000", "--seed", "43",
                "--start", start)
    tc.run(idle=2)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2000
    assert {r[0] for r in tc.sql("SELECT relname FROM pg_class WHERE relnamespace ="
                                 " current_schema()::regnamespace AND relname = ANY(%s)",
                                 ([f"rollup_1m_p{d}" for d in days],))} == {f"rollup_1m_p{d}" for d in days}
    assert tc.sql("SELECT sum(n) FROM rollup_1m")[0][0] == 2000, "the backlog was not closed"
    assert_derived_exact(tc)


def test_live_readings_stay_open_until_their_minute_is_closed(plain):
    """Readings stamped now: their minutes are open at the stop, so the tables hold none of them
    and the views compute them; closed later (postgres.rollup_close_after_ms=0, once their
    minute has ended), the tables take them and the views answer the same."""
    tc = plain
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    now_ms = int(time.time() * 1000)
    produce(tc, [{"device_id": f"dev-{i % 20}", "timestamp": now_ms - i * 50,
                  "temperature": 20 + i % 7, "humidity": 40 + i % 3} for i in range(400)])
    tc.run(idle=2, extra=("postgres.rollup_close_after_ms=300000",))
    assert tc.sql("SELECT count(*) FROM rollup_1m")[0][0] == 0
    assert tc.sql("SELECT sum(n) FROM readings_1m")[0][0] == 400
    assert tc.sql("SELECT sum(n) FROM readings_1h")[0][0] == 400
    assert_derived_exact(tc)
    before = tc.sql("SELECT device_id, bucket, n, temperature_avg FROM readings_1m ORDER BY 1, 2")

    # Once the minute has ended, a run with nothing new to read closes it at its stop.
    wait_for(lambda: tc.sql("SELECT date_trunc('minute', now()) > max(time) FROM readings")[0][0],
             timeout=90, what="the readings' minute to end")
    produce(tc, [{"device_id": "dev-0", "timestamp": int(time.time() * 1000),
                  "temperature": 1.0}])
    tc.run(idle=2, extra=("postgres.rollup_close_after_ms=0",))
    assert tc.sql("SELECT sum(n) FROM rollup_1m")[0][0] in (400, 401)  # the last one may be too
    assert_derived_exact(tc)
    after = {(r[0], r[1]): r[2:] for r in tc.sql(
        "SELECT device_id, bucket, n, temperature_avg FROM readings_1m")}
    # The same answers from the tables as from the readings (the last reading is a minute later).
    for dev, bucket, n, avg in before:
        assert after[(dev, bucket)][0] == n
        assert abs(after[(dev, bucket)][1] - avg) < 1e-9


def test_two_members_closing_while_they_flush_and_one_killed(plain):
    """Two pipelines of one group read a live stream while buckets close every 10 s right at the
    minute's end (postgres.rollup_close_after_ms=0): readings of the minute just closed are still
    in flight and reach the tables by the late path, while the other member closes. One member
    is killed (-9) and started again. The tables' closed buckets and the views end exact."""
    tc = plain
    tc.migrate()
    extra = ("postgres.rollup_close_after_ms=0", "pipeline.batch_size=200",
             "postgres.rollup_interval_ms=300")
    sim = tc.spawn("simulate", "--devices", "300", "--count", "12000", "--rate", "400",
                   "--cadence-ms", "1000", "--seed", "43")
    a = tc.spawn("run", extra=extra)
    b = tc.spawn("run", extra=extra)
    try:
        wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] > 4000, timeout=120,
                 what="a third of the readings", proc=a)
        a.send_signal(signal.SIGKILL)
        a.communicate()
        a = tc.spawn("run", extra=extra)
        _, err = sim.communicate(timeout=300)
        assert sim.returncode == 0, err[-3000:]
        wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] == 12000, timeout=120,
                 what="every reading stored", proc=b)
        # A closing after the last reading's minute ended, by a member still running.
        wait_for(lambda: tc.sql("SELECT materialized_1m > max(time) FROM rollup_state, readings"
                                " GROUP BY materialized_1m")[0][0],
                 timeout=150, what="every minute closed", proc=b)
        for p in (a, b):
            p.send_signal(signal.SIGTERM)
        for p in (a, b):
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            tc.assert_clean(err)
    finally:
        for p in (sim, a, b):
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert_derived_exact(tc)
    assert tc.sql("SELECT sum(n) FROM rollup_1m")[0][0] == 12000


def test_a_closing_between_aggregation_and_flush(plain):
    """The rollups' sink leaves out of its aggregates the readings of buckets open when it last
    read W and H (store/sink_rollup.c). Here a closing moves W and H past such readings after the
    sink took them and before its flush (postgres.rollup_interval_ms at its largest: the flush is
    the stop's): the closing cannot take them (the rollups' marks are not past them yet), so the
    flush must, from the stored readings of its offset ranges, into both tables. Without that the
    tables lose them. Readings three hours old, a new metric among them; the fleet's first
    reading is read and its flush (or its absence) settled before the others come."""
    tc = plain
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    now_ms = int(time.time() * 1000)
    p = tc.spawn("run", extra=("postgres.rollup_interval_ms=600000",))
    try:
        produce(tc, [{"device_id": "dev-first", "timestamp": now_ms - 3 * 3600000,
                      "temperature": 1.0}])
        wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] == 1, timeout=60,
                 what="the first reading stored", proc=p)
        time.sleep(2)
        produce(tc, [{"device_id": f"dev-{i % 11}", "timestamp": now_ms - 3 * 3600000 + i * 7000,
                      "temperature": 20 + i * 0.25, "humidity": 40 + i % 9,
                      **({"co2": 400.5 + i} if i % 4 == 0 else {})} for i in range(300)])
        wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] == 301, timeout=60,
                 what="every reading stored", proc=p)
        time.sleep(1)
        # The rollups have none of them yet: a closing now writes no bucket of theirs.
        assert tc.sql("SELECT count(*) FROM rollup_1m")[0][0] == 0
        assert tc.sql("SELECT tc_rollup_materialize(%s, %s, now())",
                      (f"{tc.group}/rollups", tc.topic))[0][0] == 0
        w_age, h_age = marks(tc)
        assert w_age < 60 and h_age < 3600, (w_age, h_age)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        tc.assert_clean(err)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert "a closing passed over before their flush" in err, err[-3000:]
    assert tc.sql("SELECT sum(n) FROM rollup_1m")[0][0] == 301
    assert tc.sql("SELECT sum(n), sum(co2_n) FROM rollup_1h") == [(301, 75)]
    assert_derived_exact(tc)
