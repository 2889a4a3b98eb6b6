"""docs/operations.md, "Recovery procedures": every procedure there is a shell block marked
`<!-- procedure: NAME -->`; these tests break things the way the procedure describes, run the block
exactly as written (with this test's topic, group, schema and lake) and check the outcome against
the oracle, so the documentation and the tests cannot drift apart."""

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

from oracle import METRICS, classify
from procedures import procedure
from test_lake import assert_lake_matches
from test_pipeline import assert_store_matches
from conftest import ROOT
from waits import wait_for


def run_procedure(tc, name, tmp_path, lake, env=None, timeout=600):
    """Run the block with `thermocline` on PATH configured for this test."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "thermocline"
    settings = " ".join(shlex.quote(a) for a in tc.settings((f"lake.dir={lake}",)))
    wrapper.write_text("#!/bin/sh\nsub=$1\nshift\nexec " + shlex.quote(os.path.abspath(tc.bin))
                       + ' "$sub" ' + settings + ' "$@"\n')
    wrapper.chmod(0o755)
    e = tc.env()
    e.update({"PATH": f"{bindir}:{e['PATH']}", "SCHEMA": tc.schema, "GROUP": tc.group,
              "TOPIC": tc.topic})
    e.update(env or {})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", procedure(name)], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    tc.assert_clean(proc.stderr)
    return proc


def setup(tc, lake, count=4000, seed=51, run=True):
    tc.partitions = 2
    tc.migrate()
    s = tc.simulate("--devices", "40", "--count", str(count), "--invalid-ratio", "0.05", "--seed",
                    str(seed))
    assert s["failed"] == 0
    if run:
        tc.run(idle=2, extra=(f"lake.dir={lake}",))


def stored_some(tc):
    """The pipeline has made its tables and stored rows."""
    return tc.sql("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
                  " AND table_name = 'readings'") and tc.sql("SELECT count(*) FROM readings")[0][0] > 0


def lake_bytes(lake):
    out = {}
    for f in glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")):
        with open(f, "rb") as fh:
            out[f] = fh.read()
    return out


def test_lost_database(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake)
    files = lake_bytes(lake)
    tc.sql(f'DROP SCHEMA "{tc.schema}" CASCADE')
    out = run_procedure(tc, "lost-database", tmp_path, lake).stdout
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    for p, end in exp["ends"].items():
        assert f"{p}|{end}" in out
    # The lake was complete: it was not written again.
    assert lake_bytes(lake) == files
    assert_lake_matches(lake, exp, tc)


def test_lost_lake_files(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake)
    victim = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*-p0-*.parquet")))[0]
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    bad = tc.cmd("lake", "verify", extra=(f"lake.dir={lake}",), check=False)
    assert bad.returncode == 1 and "BAD" in bad.stdout
    out = run_procedure(tc, "lost-lake-files", tmp_path, lake).stdout
    assert "0 bad" in out
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)


def test_poisoned_partition(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake, run=False)
    p, o = 1, 700
    run_procedure(tc, "poisoned-partition", tmp_path, lake,
                  env={"POISON_PARTITION": str(p), "POISON_OFFSET": str(o)})
    oracle = tc.oracle()
    exp = oracle.expect()
    # The skipped message is a dead letter whatever it held.
    value = next(v for (mp, mo, _k, v) in oracle.messages()[0] if (mp, mo) == (p, o))
    reason, doc = classify(value, datetime.now(timezone.utc))
    if reason is None:
        exp["valid"] -= 1
        for m in METRICS:
            if doc.get(m) is not None:
                exp["sums"][m] -= Decimal(doc[m])
                exp["counts"][m] -= 1
    exp["dead"][(p, o)] = "store_refused"
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
    (detail, payload) = tc.sql("SELECT detail, payload FROM dead_letters WHERE source_partition = %s"
                               " AND source_offset = %s", (p, o))[0]
    assert "skipped" in detail and bytes(payload) == value


def test_stuck_consumer_group(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake, count=30000, run=False)
    # A member killed -9 in the middle: it stays in the group until its session times out.
    proc = tc.spawn("run", extra=(f"lake.dir={lake}", "pipeline.batch_size=500"))
    wait_for(lambda: stored_some(tc), timeout=120, what="the first stored rows", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    run_procedure(tc, "stuck-consumer-group", tmp_path, lake)
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)


def test_lost_lake_disk(tc, tmp_path):
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    setup(tc, lake)
    tc.cmd("lake", "replicate", "--to", replica, extra=(f"lake.dir={lake}",))
    # More readings after the last replication: the replica is behind the lake and the store.
    s = tc.simulate("--devices", "40", "--count", "3000", "--invalid-ratio", "0.05", "--seed", "52")
    assert s["failed"] == 0
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    in_replica = set(os.path.relpath(f, replica) for f in glob.glob(
        os.path.join(replica, "telemetry", "*", "*", "*", "*.parquet")))
    assert in_replica and in_replica != set(os.path.relpath(f, lake) for f in glob.glob(
        os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")))
    # The disk is lost; a new, empty one is mounted in its place.
    shutil.rmtree(lake)
    os.makedirs(lake)
    out = run_procedure(tc, "lost-lake-disk", tmp_path, lake,
                        env={"LAKE_DIR": lake, "REPLICA_DIR": replica}).stdout
    assert out.count("0 bad, 0 temporary") == 2, out
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
    # The files the replica had came back byte for byte (not written again from Kafka).
    for rel in in_replica:
        with open(os.path.join(lake, rel), "rb") as a, open(os.path.join(replica, rel), "rb") as b:
            assert a.read() == b.read(), rel
    # And the replica is up to date again.
    assert_lake_matches(replica, exp)


def stable_marks(tc, quiet=3.0, timeout=60):
    """The sum of the group's store marks once it has not changed for quiet seconds."""
    query = "SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets WHERE group_id = %s"
    deadline = time.time() + timeout
    last, since = tc.sql(query, (tc.group,))[0][0], time.time()
    while time.time() - since < quiet:
        assert time.time() < deadline, f"the marks kept moving for {timeout} s: {last}"
        time.sleep(0.2)
        now = tc.sql(query, (tc.group,))[0][0]
        if now != last:
            last, since = now, time.time()
    return last


def test_process_wedged(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake, count=30000, run=False)
    # A member that is alive, holds its partitions and does nothing: stopped with SIGSTOP in the
    # middle of the topic. A short session timeout, so that the procedure's wait for the group to
    # drop it after the kill is short too.
    proc = tc.spawn("run", extra=(f"lake.dir={lake}", "pipeline.batch_size=500",
                                  "rdkafka.session.timeout.ms=6000"))
    wait_for(lambda: stored_some(tc), timeout=120, what="the first stored rows", proc=proc)
    proc.send_signal(signal.SIGSTOP)
    try:
        # A transaction the process had sent whole before it stopped still commits (a grown batch
        # of thousands of rows takes a while on a loaded machine), and one it had sent in part
        # waits for the rest forever: the marks it holds are those that stay put.
        held = stable_marks(tc)
        assert held < 30000, "the run finished before it was wedged"
        out = run_procedure(tc, "process-wedged", tmp_path, lake,
                            env={"WEDGED_PID": str(proc.pid)}).stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    tc.assert_clean(err)
    # The procedure saw no progress, and the marks it saw were those of the wedged process.
    m = re.search(r"store marks: (\d+) -> (\d+) in 10 s", out)
    assert m and m.group(1) == m.group(2) == str(held), out
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
    for p, end in exp["ends"].items():
        assert f"{p}|{end}" in out


def test_bad_deploy_rolled_back(tc, tmp_path):
    lake = str(tmp_path / "lake")
    setup(tc, lake, count=2000, seed=61)
    good = tmp_path / "previous.yaml"
    good.write_text("log:\n  level: info\n")
    config = tmp_path / "thermocline.yaml"
    # The bad version: a limit that refuses nearly every good reading.
    config.write_text("validation:\n  temperature_max: 0\n")
    deployed_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    bad = tc.spawn("run", "--config", str(config), extra=(f"lake.dir={lake}",))
    # Reaped as soon as it exits (as systemd would), or the procedure's `kill -0` would go on
    # seeing a zombie; its output is drained meanwhile.
    result = {}
    reaper = threading.Thread(target=lambda: result.update(zip(("out", "err"), bad.communicate())),
                              daemon=True)
    reaper.start()
    try:
        s = tc.simulate("--devices", "40", "--count", "3000", "--invalid-ratio", "0.05", "--seed",
                        "62")
        assert s["failed"] == 0
        ends = tc.oracle().expect()["ends"]
        deadline = time.time() + 180
        while dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets")) != \
                {p: e for p, e in ends.items() if e > 0}:
            assert bad.poll() is None, f"the bad version exited {bad.returncode}"
            assert time.time() < deadline, "the bad version did not reach the end of the topic"
            time.sleep(0.2)
        (refused,) = tc.sql("SELECT count(*) FROM dead_letters WHERE reason = 'out_of_range'")[0]
        assert refused > 1000, refused
        out = run_procedure(tc, "bad-deploy-rolled-back", tmp_path, lake, env={
            "DEPLOYED_AT": deployed_at, "BAD_PIDS": str(bad.pid), "CONFIG": str(config),
            "PREVIOUS_CONFIG": str(good)}).stdout
    finally:
        if bad.poll() is None:
            bad.kill()
        reaper.join(60)
    err = result.get("err", "")
    assert bad.returncode == 0, err[-4000:]
    tc.assert_clean(err)
    assert config.read_text() == good.read_text()
    assert "out_of_range" in out
    # Every reading the bad version refused is stored now, once, in both stores; the dead letters
    # are exactly what the previous version refuses.
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_lake_matches(lake, exp, tc)
