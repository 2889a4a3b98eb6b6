"""Writers in parallel (postgres.writers): batches are copied on several connections at once and
commit in the order they were read, so a batch that fails never has a later one's offsets cover its
rows -- whatever the number of writers, the store ends up with every reading exactly once."""

import json
import signal
import time

import psycopg
import pytest
from confluent_kafka import Producer

from test_pipeline import assert_store_matches

COUNT = 20000


def produce_with_hot_rows(tc):
    """COUNT readings of 100 devices; every 397th is too hot for a CHECK added to readings."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    p = Producer({"bootstrap.servers": tc.brokers, "linger.ms": 20})
    hot = set()
    for i in range(COUNT):
        dev = f"d-{i % 100}"
        temp = 20.0 + (i % 7)
        if i % 397 == 5:
            temp = 75.0
            hot.add(i)
        doc = {"device_id": dev, "timestamp": ts, "temperature": temp, "seq": i}
        p.produce(tc.topic, json.dumps(doc).encode(), key=dev.encode())
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return hot


@pytest.mark.parametrize("writers", [1, 4])
def test_failed_batches_commit_in_order(tc, writers):
    """Each refused row fails its batch while later batches are in flight on other writers: they
    roll back and are written again after it, in order. Small batches keep several in flight."""
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute("ALTER TABLE readings ADD CONSTRAINT temperature_sane CHECK (temperature < 60)")
        # The invariant that makes a crash at any moment exact: a partition's stored offset never
        # goes back (a later batch committed before an earlier one would make it).
        conn.execute("CREATE TABLE offset_regressions (partition int, old bigint, new bigint)")
        conn.execute(f"""CREATE FUNCTION note_regression() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.next_offset < OLD.next_offset THEN
                INSERT INTO "{tc.schema}".offset_regressions
                VALUES (NEW.partition, OLD.next_offset, NEW.next_offset);
              END IF;
              RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER offsets_forward BEFORE UPDATE ON ingest_offsets"
                     " FOR EACH ROW EXECUTE FUNCTION note_regression()")
    hot = produce_with_hot_rows(tc)
    proc = tc.run(idle=2, extra=(f"postgres.writers={writers}", "pipeline.batch_size=100",
                                 "pipeline.batch_size_max=100", "dedupe.window_s=0"))
    tc.assert_clean(proc.stderr)

    stored = [r[0] for r in tc.sql("SELECT seq FROM readings")]
    assert len(stored) == len(set(stored)), "a reading was stored twice"
    assert set(stored) == set(range(COUNT)) - hot
    dead = tc.sql("SELECT reason, convert_from(payload, 'UTF8') FROM dead_letters")
    assert {r[0] for r in dead} == {"store_refused"}
    assert sorted(json.loads(r[1])["seq"] for r in dead) == sorted(hot)
    (n, distinct) = tc.sql("SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset))"
                           " FROM (SELECT kafka_partition, kafka_offset FROM readings UNION ALL"
                           " SELECT source_partition, source_offset FROM dead_letters) m")[0]
    assert n == distinct == COUNT
    ends = dict(tc.sql("SELECT kafka_partition, max(kafka_offset) + 1 FROM (SELECT kafka_partition,"
                       " kafka_offset FROM readings UNION ALL SELECT source_partition, source_offset"
                       " FROM dead_letters) m GROUP BY 1"))
    assert dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets"
                       " WHERE group_id = %s", (tc.group,))) == ends
    assert tc.sql("SELECT * FROM offset_regressions") == []
    # The rollups saw exactly the stored readings.
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == COUNT - len(hot)


def test_kill_with_writers_in_flight_and_restart(tc):
    """kill -9 while four writers have batches open: nothing lost, nothing twice."""
    tc.migrate()
    tc.simulate("--devices", "500", "--count", "60000", "--invalid-ratio", "0.01", "--seed", "19")
    for delay in (1.5, 2.5):
        proc = tc.spawn("run", extra=("postgres.writers=4", "pipeline.batch_size=200",
                                      "pipeline.batch_size_max=200"))
        time.sleep(delay)  # not synchronisation: where in the run the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    tc.run(idle=3, extra=("postgres.writers=4",))
    assert_store_matches(tc, tc.oracle().expect())


def test_a_lock_timeout_is_retried_on_a_clean_connection(tc):
    """With several writers a session waits at most 5 s for a lock. A lock not granted in time while
    the partitions are made must leave the connection usable: the retry then succeeds (it failed
    with "current transaction is aborted" and stopped the run when the transaction was left open)."""
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    proc = tc.spawn("run", "--exit-when-idle", "3", extra=("postgres.writers=2",))
    head = []
    for line in proc.stderr:  # the writers make their partitions at their first batch
        head.append(line)
        if '"consuming ' in line:
            break
    with psycopg.connect(tc.dsn) as holder:
        # The partitions' advisory lock, held past the writers' lock_timeout.
        holder.execute("SELECT pg_advisory_xact_lock(7311002)")
        tc.simulate("--devices", "50", "--count", "2000", "--seed", "23")
        time.sleep(7)  # the fault, held for a stated time: several of the writers' lock_timeouts
        holder.rollback()
        out, err = proc.communicate(timeout=300)
    err = "".join(head) + err
    assert proc.returncode == 0, err[-8000:]
    tc.assert_clean(err)
    assert "lock timeout" in err, "the lock was granted in time: the test proves nothing"
    assert_store_matches(tc, tc.oracle().expect())
