"""End to end: simulator -> Kafka -> thermocline run -> PostgreSQL, checked against the oracle."""

import os
import signal
import subprocess
import time
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, TopicPartition

from oracle import METRICS
from waits import LogLines, wait_for

COUNT = int(os.environ.get("TC_IT_COUNT", "100000"))


def group_lag(tc, ends):
    c = Consumer({"bootstrap.servers": tc.brokers, "group.id": tc.group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(tc.topic, p) for p in ends], timeout=30)
        return sum(ends[tp.partition] - max(tp.offset, 0) for tp in committed)
    finally:
        c.close()


def assert_store_matches(tc, exp):
    (count, distinct) = tc.sql("SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM readings")[0]
    assert count == exp["valid"], f"stored {count} readings, expected {exp['valid']}"
    assert distinct == count, "a Kafka message was stored twice"
    for m in METRICS:
        (total, n) = tc.sql(f"SELECT coalesce(sum({m}::numeric), 0), count({m}) FROM readings")[0]
        assert n == exp["counts"][m], f"{m}: {n} values, expected {exp['counts'][m]}"
        assert Decimal(total) == exp["sums"][m], f"sum({m}) = {total}, expected {exp['sums'][m]}"
    dead = {(p, o): r for (p, o, r) in tc.sql(
        "SELECT source_partition, source_offset, reason FROM dead_letters")}
    assert len(dead) == len(exp["dead"]), f"{len(dead)} dead letters, expected {len(exp['dead'])}"
    assert dead == exp["dead"]
    offsets = dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets"))
    assert offsets == {p: e for p, e in exp["ends"].items() if e > 0}


def test_100k_readings_exactly_once(tc):
    tc.migrate()
    summary = tc.simulate("--devices", "1000", "--count", str(COUNT), "--invalid-ratio", "0.01",
                          "--seed", "42")
    assert summary["produced"] == COUNT and summary["failed"] == 0
    # Every kind of invalid reading the simulator makes was made at least once.
    assert all(n > 0 for n in summary["invalid_by_kind"].values()), summary

    tc.run(idle=3)
    exp = tc.oracle().expect()
    assert exp["total"] == COUNT
    assert exp["valid"] == summary["valid"]
    # The delivery reports are the topic, partition by partition: as many as the partition holds,
    # each with the offset the broker gave it, in order, none inferred by librdkafka.
    none = {"delivered": 0, "inferred": 0, "repeated": 0, "end": 0}
    for q, end in exp["ends"].items():
        t = summary["partitions"].get(str(q), none)
        assert (t["delivered"], t["end"], t["inferred"], t["repeated"]) == (end, end, 0, 0), \
            (q, end, summary["partitions"])
    assert_store_matches(tc, exp)
    assert group_lag(tc, exp["ends"]) == 0

    # Details name the problem, not just its class.
    details = dict(tc.sql("SELECT reason, min(detail) FROM dead_letters GROUP BY reason"))
    assert "outside" in details["out_of_range"]
    assert "future" in details["timestamp_in_future"]

    # A second run over the same topic adds nothing.
    tc.run(idle=2)
    assert_store_matches(tc, exp)


def test_kill_and_restart_stores_exactly_once(tc):
    """kill -9 in the middle of a run, then restart: nothing lost, nothing twice."""
    tc.migrate()
    tc.simulate("--devices", "500", "--count", "60000", "--invalid-ratio", "0.01", "--seed", "9")
    for delay in (1.5, 2.5):
        proc = tc.spawn("run", extra=("pipeline.batch_size=500",))
        time.sleep(delay)  # not synchronisation: where in the run the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    tc.run(idle=3)
    assert_store_matches(tc, tc.oracle().expect())


@pytest.mark.parametrize("size_max", [200, 4000])
def test_batches_grow_while_the_writer_is_busy(tc, size_max):
    """With a backlog and its one writer busy, a batch goes on filling past pipeline.batch_size, up
    to pipeline.batch_size_max (fewer, larger COPYs); with the two equal it never does."""
    tc.migrate()
    tc.simulate("--devices", "200", "--count", "40000", "--seed", "5")
    tc.run(idle=2, extra=("postgres.writers=1", "pipeline.batch_size=200",
                          f"pipeline.batch_size_max={size_max}"))
    # One transaction per batch, and now() is the transaction's start: one ingested_at each.
    sizes = [r[0] for r in tc.sql("SELECT count(*) FROM readings GROUP BY ingested_at")]
    assert sum(sizes) == 40000
    assert max(sizes) <= size_max
    if size_max == 200:
        assert len(sizes) >= 40000 // 200
    else:
        assert max(sizes) > 200, f"no batch grew past batch_size: {sorted(sizes)[-5:]}"
        assert len(sizes) < 40000 // 200


def consume_pauses(tc, extra, pause=0.3):
    """Readings stored by a run over the topic, and the pauses between its commits longer than
    pause seconds (one transaction per batch: ingested_at, the transaction's start, tells them)."""
    tc.run(idle=2, extra=extra)
    starts = [float(r[0]) for r in tc.sql("SELECT DISTINCT extract(epoch FROM ingested_at)"
                                          " FROM readings ORDER BY 1")]
    rows = tc.sql("SELECT count(*) FROM readings")[0][0]
    gaps = [b - a for a, b in zip(starts, starts[1:]) if b - a > pause]
    return rows, gaps


def test_fetching_resumes_at_once_after_the_queue_was_full(tc):
    """librdkafka 2.0 stops fetching while its queue is at queued.min.messages and looks again up
    to a second later; the fetch nudge (kafka.fetch_nudge_ms) wakes it. With a queue of 100
    messages and fetches of about 20 readings per partition, 6,000 readings take a pause of some
    0.9 s after every few batches without the nudge (the control run), and next to none with it.
    Pauses are counted, not timed, and the two runs are compared with each other: a slow machine
    makes every batch slower, which spaces the control's pauses out, and may add a stall of its
    own to either run."""
    tc.migrate()
    # Record batches of at most 10 readings: a fetch of 4 KiB per partition takes one or two.
    tc.cmd("simulate", "--devices", "60", "--count", "6000", "--seed", "11",
           extra=("rdkafka.batch.num.messages=10",))
    small = ("rdkafka.queued.min.messages=100", "rdkafka.fetch.message.max.bytes=4096",
             "pipeline.batch_size=50", "postgres.rollups=false")
    rows, nudged = consume_pauses(tc, small)
    assert rows == 6000
    tc.sql("TRUNCATE readings, ingest_offsets")
    rows, paused = consume_pauses(tc, small + ("kafka.fetch_nudge_ms=0",))
    assert rows == 6000
    assert len(paused) >= 4, \
        f"the control run paused {len(paused)} times ({sum(paused):.1f} s): the test proves nothing"
    assert len(nudged) <= len(paused) // 3 and sum(nudged) <= sum(paused) / 3, \
        f"with the nudge, {len(nudged)} pauses ({sum(nudged):.1f} s) against {len(paused)}" \
        f" ({sum(paused):.1f} s) without"


def test_batch_timeout_latency_and_sigterm(tc):
    """A batch smaller than batch_size is written after batch_timeout_ms; SIGTERM exits 0."""
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic: the consumer is assigned its partitions
    proc = tc.spawn("run", extra=("pipeline.batch_size=100000", "pipeline.batch_timeout_ms=200"))
    log = LogLines(proc.stderr)
    try:
        # The consumer has joined the group and holds every partition.
        wait_for(lambda: log.text().count("assigned ") >= tc.partitions, timeout=120,
                 what=f"{tc.partitions} partitions assigned", proc=proc, log=log)
        t0 = time.time()
        tc.simulate("--devices", "5", "--count", "5", "--seed", "3")
        while time.time() - t0 < 30 and tc.sql("SELECT count(*) FROM readings")[0][0] < 5:
            time.sleep(0.05)  # polls the condition; the latency is what is measured
        latency = time.time() - t0
        assert tc.sql("SELECT count(*) FROM readings")[0][0] == 5
        assert latency < 10, f"5 readings took {latency:.1f} s to become visible"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.join()
        proc.stdout.close()
        proc.stderr.close()
    err = log.text()
    assert proc.returncode == 0, err[-4000:]
    tc.assert_clean(err)


def test_migrate_is_idempotent_and_creates_partitions(tc):
    tc.migrate()
    tc.migrate()
    (applied, latest) = tc.sql("SELECT count(*), max(version) FROM schema_migrations")[0]
    assert applied == latest and latest >= 2
    parts = [r[0] for r in tc.sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
        " WHERE p.relname = 'readings' AND n.nspname = current_schema()")]
    # 30 days back plus a margin, today, and two days ahead.
    assert len(parts) >= 33
    today = time.strftime("readings_p%Y%m%d", time.gmtime())
    assert today in parts
    idx = tc.sql("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                 " AND tablename = 'readings'")
    assert any("device_id, \"time\" DESC" in r[0] for r in idx), idx
