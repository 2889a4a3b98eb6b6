"""`thermocline lake replicate --to DIR`: the replica holds exactly the lake's readings (checked by
the same oracle as the lake itself, and by `lake verify` run on the replica), a second run copies
nothing, a run after more ingestion copies only the new files, a kill -9 mid-way is resumed, a
damaged replica file is found and replaced by --checksum, files the lake no longer has (merged by
`lake compact`) leave the replica, and the service mode reports the lag on /metrics."""

import contextlib
import fcntl
import glob
import os
import re
import signal
import time

from test_lake import assert_lake_matches
from test_observe import free_port, get
from test_pipeline import assert_store_matches
from waits import wait_for as _wait_for


def files_of(root):
    out = {}
    for f in glob.glob(os.path.join(root, "telemetry", "*", "*", "*", "*.parquet")):
        with open(f, "rb") as fh:
            out[os.path.relpath(f, root)] = fh.read()
    return out


def progress_of(root):
    out = {}
    for f in glob.glob(os.path.join(root, "_thermocline", "progress", "*", "*")):
        with open(f) as fh:
            out[os.path.relpath(f, root)] = int(fh.read())
    return out


def replicate(tc, lake, replica, *args, check=True):
    proc = tc.cmd("lake", "replicate", "--to", replica, *args, extra=(f"lake.dir={lake}",),
                  check=check)
    if not check:
        return proc, None
    m = re.search(r": (\d+) files, (\d+) copied \((\d+) bytes\), (\d+) verified by checksum, "
                  r"(\d+) deleted", proc.stdout)
    assert m, proc.stdout
    return proc, dict(zip(("files", "copied", "bytes", "verified", "deleted"), map(int, m.groups())))


def assert_replica_is_lake(tc, lake, replica, exp):
    assert files_of(replica) == files_of(lake)
    assert progress_of(replica) == progress_of(lake)
    assert_lake_matches(replica, exp)
    ok = tc.cmd("lake", "verify", extra=(f"lake.dir={replica}",))
    assert " 0 bad, 0 temporary" in ok.stdout, ok.stdout


def ingest(tc, lake, count, seed, days=3):
    # Several days and one-second rolls: many files, as a lake has. The readings end two hours
    # before now (none is in the future when sent and in the past when the oracle looks).
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * 86400 + 3600))
    cadence_ms = (days * 86400 - 3 * 3600) * 1000 * 300 // (count + 300)
    s = tc.simulate("--devices", "300", "--count", str(count), "--invalid-ratio", "0.02", "--seed",
                    str(seed), "--start", start, "--cadence-ms", str(cadence_ms))
    assert s["failed"] == 0
    tc.run(idle=2, extra=(f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=2000"))


def test_replicate_is_exact_incremental_and_verified(tc, tmp_path):
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    tc.partitions = 3
    tc.migrate()
    ingest(tc, lake, 30000, 61)
    n_files = len(files_of(lake))
    _, r = replicate(tc, lake, replica)
    assert r["files"] == n_files and r["copied"] == n_files and r["deleted"] == 0
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_replica_is_lake(tc, lake, replica, exp)

    # Nothing new: nothing copied.
    _, r = replicate(tc, lake, replica)
    assert r["copied"] == 0 and r["files"] == n_files

    # More readings: only the new files are copied.
    before = set(files_of(lake))
    ingest(tc, lake, 9000, 62)
    new = set(files_of(lake)) - before
    assert new
    _, r = replicate(tc, lake, replica)
    assert r["copied"] == len(new), (r, len(new))
    exp = tc.oracle().expect()
    assert_replica_is_lake(tc, lake, replica, exp)

    # A replica file damaged in place (same size, same mtime) passes the quick check; --checksum
    # finds it and copies it again.
    victim = os.path.join(replica, sorted(files_of(replica))[0])
    st = os.stat(victim)
    with open(victim, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, r = replicate(tc, lake, replica)
    assert r["copied"] == 0
    assert files_of(replica) != files_of(lake)
    _, r = replicate(tc, lake, replica, "--checksum")
    assert r["copied"] == 1 and r["verified"] == len(files_of(lake)) - 1
    assert_replica_is_lake(tc, lake, replica, exp)


def test_replicate_follows_compaction(tc, tmp_path):
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    tc.partitions = 2
    tc.migrate()
    ingest(tc, lake, 12000, 63, days=4)
    replicate(tc, lake, replica)
    out = tc.cmd("lake", "compact", "--all-closed", extra=(f"lake.dir={lake}",)).stdout
    assert "DONE" in out, out
    _, r = replicate(tc, lake, replica)
    assert r["deleted"] > 0 and r["copied"] > 0
    assert not [f for f in files_of(replica) if f not in files_of(lake)]
    assert_replica_is_lake(tc, lake, replica, tc.oracle().expect())


def test_replicate_resumes_after_kill_9(tc, tmp_path):
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    tc.partitions = 3
    tc.migrate()
    ingest(tc, lake, 40000, 64)
    total = sum(len(b) for b in files_of(lake).values())
    # Capped at a tenth of the lake per second: about ten seconds, killed after two.
    proc = tc.spawn("lake", "replicate", "--to", replica, "--max-mb-per-s", str(total / 10 / 1e6),
                    extra=(f"lake.dir={lake}",))
    deadline = time.time() + 60
    while time.time() < deadline and len(files_of(replica)) < 3:
        time.sleep(0.05)
    time.sleep(1)  # not synchronisation: the kill lands in the middle of the paced copy
    assert proc.poll() is None, "the replication ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    copied = files_of(replica)
    assert 0 < len(copied) < len(files_of(lake))
    # What a kill leaves: complete files (the same bytes as the lake's), no progress yet.
    for rel, data in copied.items():
        assert files_of(lake)[rel] == data
    assert progress_of(replica) == {}
    # And a copy cut short in the middle of a file (its temporary name).
    day = os.path.dirname(os.path.join(replica, next(iter(copied))))
    with open(os.path.join(day, ".replica-part-x.parquet.tmp"), "wb") as f:
        f.write(b"PAR1 half a file")
    _, r = replicate(tc, lake, replica)
    assert r["copied"] == len(files_of(lake)) - len(copied)
    assert_replica_is_lake(tc, lake, replica, tc.oracle().expect())


def test_replicate_refuses_itself_and_a_second_replication(tc, tmp_path):
    lake = str(tmp_path / "lake")
    tc.migrate()
    ingest(tc, lake, 2000, 65, days=1)
    proc, _ = replicate(tc, lake, os.path.join(lake, "telemetry", "copy", "x"), check=False)
    assert proc.returncode == 1 and "inside it" in proc.stderr
    # Refused before anything was created in the lake.
    assert not os.path.exists(os.path.join(lake, "telemetry", "copy"))
    proc, _ = replicate(tc, lake, lake, check=False)
    assert proc.returncode == 1 and "inside it" in proc.stderr
    replica = str(tmp_path / "replica")
    with held_lock(replica):
        proc, _ = replicate(tc, lake, replica, check=False)
        assert proc.returncode == 1 and "another replication" in proc.stderr, proc.stderr
    replicate(tc, lake, replica)


@contextlib.contextmanager
def held_lock(replica):
    """What a replication into replica holds while it runs."""
    os.makedirs(os.path.join(replica, "_thermocline", "replica"), exist_ok=True)
    with open(os.path.join(replica, "_thermocline", "replica", "lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def metric(port, name):
    status, body = get(port, "/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body, re.M)
    assert m, body
    return float(m.group(1))


def test_replicate_service_reports_lag(tc, tmp_path):
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    tc.partitions = 2
    tc.migrate()
    ingest(tc, lake, 4000, 66, days=1)
    port = free_port()
    proc = tc.spawn("lake", "replicate", "--to", replica, "--interval", "2", "--listen",
                    f"127.0.0.1:{port}", extra=(f"lake.dir={lake}",))
    try:
        def wait_for(pred, timeout=60):
            """The shared wait_for; the listener may not answer yet (OSError): not yet."""
            def answered():
                try:
                    return pred()
                except OSError:
                    return None
            return _wait_for(answered, timeout=timeout, what="the replication's metric", proc=proc)

        assert wait_for(lambda: metric(port, "thermocline_lake_replica_runs_total") >= 1)
        assert wait_for(lambda: metric(port, "thermocline_lake_replica_behind_offsets") == 0)
        assert metric(port, "thermocline_lake_replica_lag_seconds") < 30
        assert metric(port, "thermocline_lake_replica_files_copied_total") == len(files_of(lake))
        # Hold the replication off (the lock is held), ingest: the lag shows the new readings.
        with held_lock(replica):
            ingest(tc, lake, 3000, 67, days=1)
            assert wait_for(lambda: metric(port, "thermocline_lake_replica_failures_total") >= 1)
            behind = metric(port, "thermocline_lake_replica_behind_offsets")
            assert behind >= 3000, behind
        assert wait_for(lambda: metric(port, "thermocline_lake_replica_behind_offsets") == 0)
        assert files_of(replica) == files_of(lake)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    tc.assert_clean(err)


def waiting_for_a_lock(pid):
    with open("/proc/locks") as f:
        return any(" -> FLOCK" in line and f" {pid} " in line for line in f)


def test_replicate_waits_for_a_compaction_of_the_day(tc, tmp_path):
    """`lake compact` holds the day's lock while it swaps the day; a replication waits for it
    rather than list a day half swapped."""
    lake, replica = str(tmp_path / "lake"), str(tmp_path / "replica")
    tc.partitions = 2
    tc.migrate()
    ingest(tc, lake, 3000, 68, days=2)
    day = sorted(glob.glob(os.path.join(lake, "telemetry", "*", "*", "*")))[0]
    y, m, d = (int(part.split("=")[1]) for part in day.split(os.sep)[-3:])
    lock = os.path.join(lake, "_thermocline", "locks", f"day-{y:04d}-{m:02d}-{d:02d}.lock")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        proc = tc.spawn("lake", "replicate", "--to", replica, extra=(f"lake.dir={lake}",))
        deadline = time.time() + 60
        while not waiting_for_a_lock(proc.pid):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the replication never waited for the day's lock"
            time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert_replica_is_lake(tc, lake, replica, tc.oracle().expect())
