"""`thermocline replay`: a range processed again into PostgreSQL and the lake gives exactly the
oracle's answer, a second identical replay changes nothing (table checksums, lake file bytes), a
replay restores deleted lake files, is refused while a `run` of the group is active, and completes
when run again after a kill -9."""

import glob
import hashlib
import json
import os
import signal
import time

from confluent_kafka import Consumer, TopicPartition

from test_lake import assert_lake_matches
from test_pipeline import assert_store_matches

# Content checksums: every column that follows from the Kafka messages (ingested_at / updated_at
# say when a row was written, and a replay writes rows again). Rollup sums are rounded: a bucket
# recomputed in SQL may differ from the batch writer's sum in the last bit.
CHECKSUMS = {
    "readings": "SELECT md5(coalesce(string_agg(x, '|' ORDER BY x), '')) FROM (SELECT (time,"
                " device_id, temperature, humidity, pressure, battery, latitude, longitude, tags,"
                " extra, kafka_partition, kafka_offset)::text AS x FROM readings) q",
    "dead_letters": "SELECT md5(coalesce(string_agg(d::text, '|' ORDER BY d.id), ''))"
                    " FROM dead_letters d",
    "ingest_offsets": "SELECT md5(string_agg((group_id, topic, partition, next_offset)::text, '|'"
                      " ORDER BY partition)) FROM ingest_offsets",
    "latest_state": "SELECT md5(string_agg((device_id, time, temperature, humidity, pressure,"
                    " battery, latitude, longitude, tags, extra, kafka_partition, kafka_offset)::text,"
                    " '|' ORDER BY device_id)) FROM latest_state",
}
for _t in ("rollup_1m_live", "rollup_1h_live"):
    CHECKSUMS[_t] = (
        "SELECT md5(string_agg((device_id, bucket, n, " + ", ".join(
            f"{m}_n, round({m}_sum::numeric, 6), {m}_min, {m}_max"
            for m in ("temperature", "humidity", "pressure", "battery", "latitude", "longitude"))
        + f")::text, '|' ORDER BY device_id, bucket)) FROM {_t}")


DERIVED = ("rollup_1m_live", "rollup_1h_live", "latest_state")


def derived_exact(tc, exp):
    """Did `run` leave rollups and latest rows matching the readings? Then a replay must too."""
    return (tc.sql("SELECT coalesce(sum(n), 0) FROM rollup_1m_live")[0][0] == exp["valid"]
            and tc.sql("SELECT coalesce(sum(n), 0) FROM rollup_1h_live")[0][0] == exp["valid"]
            and tc.sql("SELECT count(*) FROM latest_state")[0][0]
            == tc.sql("SELECT count(DISTINCT device_id) FROM readings")[0][0])


def checksums(tc, derived=True):
    return {t: tc.sql(q)[0][0] for t, q in CHECKSUMS.items() if derived or t not in DERIVED}


def lake_files(lake):
    out = {}
    for f in glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")):
        with open(f, "rb") as fh:
            out[os.path.relpath(f, lake)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def replay(tc, *args, lake=None, check=True, timeout=600):
    extra = (f"lake.dir={lake}",) if lake else ()
    return tc.cmd("replay", *args, extra=extra, check=check, timeout=timeout)


def setup(tc, lake, count=6000, seed=31, extra=()):
    tc.partitions = 2
    tc.migrate()
    s = tc.simulate("--devices", "50", "--count", str(count), "--invalid-ratio", "0.05", "--seed",
                    str(seed))
    assert s["produced"] == count and s["failed"] == 0
    tc.run(idle=2, extra=(f"lake.dir={lake}", *extra))
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
    return exp


def assert_exact(tc, lake, exp, derived=True):
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
    if derived:
        # Rollups and latest rows agree with the readings they summarise.
        assert derived_exact(tc, exp)


def test_replay_from_offset_twice_changes_nothing(tc, tmp_path):
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake)
    d = derived_exact(tc, exp)
    before_sums, before_files = checksums(tc, d), lake_files(lake)
    ids_before = tc.sql("SELECT id FROM dead_letters WHERE source_partition = 0 ORDER BY id")
    out = replay(tc, "--from-offset", "0:500", lake=lake).stdout
    end0 = exp["ends"][0]
    assert f"partition 0: replayed offsets 500-{end0}" in out, out
    assert_exact(tc, lake, exp, d)
    # Content is unchanged (the first replay may merge lake commits, never the rows).
    assert checksums(tc, d) == before_sums
    # Dead letters are confirmed, not recreated: same ids.
    assert tc.sql("SELECT id FROM dead_letters WHERE source_partition = 0 ORDER BY id") == ids_before
    first_sums, first_files = checksums(tc, d), lake_files(lake)
    assert set(first_files) >= {f for f in before_files if "-p1-" in f}
    # The same replay again: nothing changes, down to the lake's bytes.
    replay(tc, "--from-offset", "0:500", lake=lake)
    assert checksums(tc, d) == first_sums
    assert lake_files(lake) == first_files
    assert_exact(tc, lake, exp, d)
    # Each replay is in the audit log, with the offsets it went over.
    events = tc.sql(f"SELECT target, status, params FROM \"{tc.audit_schema}\".events"
                    " WHERE action = 'replay' ORDER BY id")
    assert [(e[0], e[1]) for e in events] == [(tc.topic, "ok")] * 2
    assert events[0][2]["partitions"][0]["partition"] == 0 and events[0][2]["partitions"][0]["from"] == 500


def test_replay_from_time(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.partitions = 2
    tc.migrate()
    tc.simulate("--devices", "50", "--count", "3000", "--invalid-ratio", "0.05", "--seed", "32")
    c = Consumer({"bootstrap.servers": tc.brokers, "group.id": "x"})
    mid = {p: c.get_watermark_offsets(TopicPartition(tc.topic, p), timeout=30)[1] for p in (0, 1)}
    c.close()
    # Not synchronisation: the clock moves on, so that the messages before and after t differ in
    # their (second-resolution) timestamps.
    time.sleep(1.5)
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    time.sleep(1.5)
    tc.simulate("--devices", "50", "--count", "3000", "--invalid-ratio", "0.05", "--seed", "33")
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    exp = tc.oracle().expect()
    d = derived_exact(tc, exp)
    before = checksums(tc, d)
    out = replay(tc, "--from-time", t, lake=lake).stdout
    for p in (0, 1):
        assert f"partition {p}: replayed offsets {mid[p]}-{exp['ends'][p]}" in out, out
    assert checksums(tc, d) == before
    assert_exact(tc, lake, exp, d)
    # --partition narrows it, --to-time bounds it: nothing at or after the time is touched.
    out = replay(tc, "--from-time", "2000-01-01T00:00:00Z", "--to-time", t, "--partition", "1",
                 lake=lake).stdout
    assert f"partition 1: replayed offsets 0-{mid[1]}" in out and "partition 0" not in out, out
    assert checksums(tc, d) == before
    assert_exact(tc, lake, exp, d)


def test_replay_bounded_range_keeps_rows_above(tc, tmp_path):
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake, extra=("lake.roll_bytes=1048576",))
    d = derived_exact(tc, exp)
    before = checksums(tc, d)
    stamp = dict(((p, o), t) for p, o, t in tc.sql(
        "SELECT kafka_partition, kafka_offset, ingested_at FROM readings"))
    offsets_before = tc.sql("SELECT partition, next_offset, updated_at FROM ingest_offsets ORDER BY 1")
    out = replay(tc, "--from-offset", "1:1000", "--to-offset", "1:1500", lake=lake).stdout
    assert "partition 1: replayed offsets 1000-1500" in out, out
    after = dict(((p, o), t) for p, o, t in tc.sql(
        "SELECT kafka_partition, kafka_offset, ingested_at FROM readings"))
    changed = {k for k in after if after[k] != stamp.get(k)}
    assert changed and all(k[0] == 1 and 1000 <= k[1] < 1500 for k in changed), sorted(changed)[:5]
    assert len([k for k in stamp if k[0] == 1 and 1000 <= k[1] < 1500]) == len(changed)
    # The store's mark did not move (not even rewritten).
    assert tc.sql("SELECT partition, next_offset, updated_at FROM ingest_offsets ORDER BY 1") == offsets_before
    assert checksums(tc, d) == before
    assert_exact(tc, lake, exp, d)
    files = lake_files(lake)
    replay(tc, "--from-offset", "1:1000", "--to-offset", "1:1500", lake=lake)
    assert checksums(tc, d) == before and lake_files(lake) == files


def test_replay_restores_deleted_lake_files(tc, tmp_path):
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake, count=8000, extra=("lake.roll_bytes=1048576", "pipeline.batch_size=500",
                                              "lake.roll_seconds=1"))
    d = derived_exact(tc, exp)
    files = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*-p0-*.parquet")))
    # The last file of partition 0 goes (a lost disk, a wrong rm).
    victim = max(files, key=lambda f: int(f.rsplit("-", 2)[1]))
    first = int(victim.rsplit("-", 2)[1])
    os.unlink(victim)
    t = json.loads(tc.cmd("lake", "ls", "--json", extra=(f"lake.dir={lake}",)).stdout)
    assert t["rows"] < exp["valid"]
    replay(tc, "--from-offset", f"0:{first}", lake=lake)
    assert_exact(tc, lake, exp, d)
    assert "0 bad" in tc.cmd("lake", "verify", extra=(f"lake.dir={lake}",)).stdout


def test_replay_refused_while_run_is_active(tc, tmp_path):
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake, count=2000)
    d = derived_exact(tc, exp)
    before = checksums(tc, d)
    run = tc.spawn("run", extra=(f"lake.dir={lake}",))
    interrupted = 0
    try:
        deadline = time.time() + 90
        while True:
            r = replay(tc, "--from-offset", "0:0", lake=lake, check=False, timeout=120)
            if r.returncode != 0 and ("joined group" in r.stderr or "taken away" in r.stderr):
                # The run joined while this replay ran: it must stop (never wait for partitions
                # the run was given) and say so; the range is completed by replaying again.
                assert "run the replay again" in r.stderr or "taken away" in r.stderr, r.stderr
                interrupted += 1
            elif r.returncode != 0 or time.time() > deadline:
                break
            time.sleep(1)  # the run has not joined the group yet: that replay was legitimate
        assert r.returncode == 1, r.stderr
        assert f'consumer group \\"{tc.group}\\" has 1 active member' in r.stderr, r.stderr
        assert "stop `thermocline run`" in r.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)
    if interrupted:
        replay(tc, "--from-offset", "0:0", lake=lake)
    assert checksums(tc, d) == before
    assert_exact(tc, lake, exp, d)


def test_replay_stops_when_a_run_joins(tc, tmp_path):
    """A run started during a replay (after the replay's own check) stops the replay, which says
    so, whatever the group gave the run first; replaying again afterwards is exact."""
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake, count=40000, extra=("pipeline.batch_size=500",))
    d = derived_exact(tc, exp)
    before = checksums(tc, d)
    args = ("--from-offset", "0:0", "--from-offset", "1:0")
    proc = tc.spawn("replay", *args, extra=(f"lake.dir={lake}", "pipeline.batch_size=500"))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tc.sql("SELECT count(*) FROM readings")[0][0] > 0:
            break  # the range is being written again
        time.sleep(0.05)
    assert proc.poll() is None, "the replay finished before a run could join"
    run = tc.spawn("run", extra=(f"lake.dir={lake}",))
    try:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err[-4000:]
        assert "joined group" in err or "taken away" in err, err[-4000:]
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)
    replay(tc, *args, lake=lake)
    assert checksums(tc, d) == before
    assert_exact(tc, lake, exp, d)


def test_replay_killed_then_run_again(tc, tmp_path):
    lake = str(tmp_path / "lake")
    exp = setup(tc, lake, count=40000, extra=("pipeline.batch_size=500",))
    d = derived_exact(tc, exp)
    before = checksums(tc, d)
    marks = tc.sql("SELECT partition, next_offset FROM ingest_offsets ORDER BY 1")
    args = ("--from-offset", "0:0", "--from-offset", "1:0")
    proc = tc.spawn("replay", *args, extra=(f"lake.dir={lake}", "pipeline.batch_size=500"))
    # Kill it once the range is being written again: the reset emptied it, rows come back.
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tc.sql("SELECT count(*) FROM readings")[0][0] > 0:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the replay finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # The store's marks never moved back: a `run` now cannot store anything twice.
    assert tc.sql("SELECT partition, next_offset FROM ingest_offsets ORDER BY 1") == marks
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    (n, distinct) = tc.sql("SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset))"
                           " FROM readings")[0]
    assert n == distinct and n <= exp["valid"]
    # Running the replay again completes it exactly.
    replay(tc, *args, lake=lake)
    assert_exact(tc, lake, exp, d)
    assert checksums(tc, d) == before
