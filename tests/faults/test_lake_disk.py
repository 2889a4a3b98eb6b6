"""The lake on a small tmpfs: it fills up, turns read-only, turns writable (still full), and at last
gets its space back.
The pipeline backs off and retries through both faults, never exits, and ends exact."""

import os
import subprocess
import time

import pytest

from faultlib import SCALE, assert_exact, log, make_rng, wait_caught_up

# Free space left beside the filler: a few one-second commits fit, then the disk is full.
HEADROOM = 160 * 1024


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)


def remount(mnt, mode, timeout=30):
    """Remount rw or ro. Going read-only fails with EBUSY while a file is open for writing; the
    pipeline closes its files whenever it backs off, so keep trying."""
    deadline = time.time() + timeout
    while True:
        proc = subprocess.run(["mount", "-o", f"remount,{mode}", mnt], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode == 0:
            return time.time() - deadline + timeout
        assert time.time() < deadline, f"remount {mode}: {proc.stderr}"
        time.sleep(0.05)


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = str(tmp_path / "lake")
    os.makedirs(mnt)
    sh("mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", mnt)
    yield mnt
    subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=60)


def test_lake_disk_full_and_read_only(pipeline, tmpfs):
    rng = make_rng()
    p = pipeline
    n = SCALE["readings"]
    p.migrate()
    filler = os.path.join(tmpfs, "filler")
    st = os.statvfs(tmpfs)
    with open(filler, "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        left = st.f_bavail * st.f_frsize - HEADROOM
        while left > 0:
            left -= f.write(chunk[:min(left, len(chunk))])
    sim = p.simulate(n, rate=max(500, n // 25), seed=rng.randrange(1 << 30))
    # A daemon, stopped with SIGTERM at the end: the faults must not race an idle exit.
    m = p.spawn((f"lake.dir={tmpfs}", "lake.roll_seconds=1"))
    try:
        i = m.wait_for(r"No space left on device", timeout=120)
        t_full = time.time()
        m.wait_for(r"retrying in \d+ ms", timeout=30, start=i)
        time.sleep(3)  # the fault held: the pipeline must stay up through its back-offs
        assert m.alive(), f"the pipeline exited on a full lake disk:\n{m.text()[-6000:]}"
        full_stored = p.stored()
        # Still full, the file system turns read-only (the pipeline closes its files while it
        # backs off, which lets the remount through)...
        mark = len(m.lines)
        ro_s = remount(tmpfs, "ro")
        t_ro = time.time()
        m.wait_for(r"Read-only file system", timeout=60, start=mark)
        time.sleep(2)  # the fault held: the pipeline must stay up through its back-offs
        assert m.alive(), f"the pipeline exited on a read-only lake:\n{m.text()[-6000:]}"
        # ...then writable again, still full, and at last space is freed.
        remount(tmpfs, "rw")
        time.sleep(2)  # the fault held (still full): the pipeline must stay up
        assert m.alive()
        os.unlink(filler)
        t_ok = time.time()
        summary = sim.wait()
        wait_caught_up(p, m, tmpfs)
        rc = m.stop()
    finally:
        if m.alive():
            m.kill()
    m.assert_clean()
    assert rc == 0, m.text()[-8000:]
    retries = sum(1 for _lvl, _c, msg in m.messages() if "retrying in" in msg)
    exp = assert_exact(p, tmpfs, produced=summary["produced"])
    log(f"lake disk: full for {t_ok - t_full:.0f} s ({full_stored} readings in the store after the "
        f"first 3 s), read-only for part of it (the remount took {ro_s:.1f} s), {retries} logged "
        f"retries; {exp['valid']} valid and "
        f"{len(exp['dead'])} dead letters exactly once in store and lake, lag 0")
