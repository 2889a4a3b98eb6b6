"""The restore drill: the store's PostgreSQL cluster is destroyed and restored with pgBackRest, to
the last backup or to a point in time, and Thermocline resumes from the restored offsets.

The cluster is scripts/backup's drill cluster (WAL archived to pgBackRest) on a state directory
and port of this suite's own; Kafka is the suite's private broker. Each scenario ingests in three
rounds (A, B, C) into the store and the lake, with backups between them, destroys the cluster
(immediate stop, data directory deleted), runs the documented procedure "Lost store: restore from
backup" (docs/operations.md) as written, and checks:
- the restored store stops exactly at the restore point (its readings and offsets are those of
  the end of round B);
- after the procedure's `thermocline run`, the store and the lake hold exactly the topic's valid
  readings (assert_exact: counts, per-metric sums, key sets, dead letters, lake verify);
- the rollups and the latest state per device agree with the readings (they were restored with
  marks of their own, in the same transactions);
- the lake, ahead of the restored store, received nothing: every file is the one it had before.
The restore and the catch-up are timed and logged (bench/restore-drill does it for 10 M readings).
"""

import os
import re
import shlex
import subprocess
import time

import pytest

from faultlib import ROOT, SCALE, SCALE_NAME, assert_exact, log
from test_lake_replicate import files_of
from test_store import latest_mismatches, rollup_mismatches

BACKUP = os.path.join(ROOT, "scripts", "backup")
DOC = os.path.join(ROOT, "docs", "operations.md")


class Drill:
    """scripts/backup with this suite's state directory and port."""

    def __init__(self):
        if os.geteuid() == 0:
            state = "/var/lib/thermocline-faults-drill"
        else:
            state = os.path.join(os.path.expanduser("~"), ".cache", "thermocline-faults-drill")
        self.port = int(os.environ.get("TC_FAULTS_DRILL_PG_PORT", "25532"))
        self.env = {"THERMOCLINE_BACKUP_STATE_DIR": os.environ.get("TC_FAULTS_DRILL_DIR", state),
                    "THERMOCLINE_BACKUP_PG_PORT": str(self.port),
                    "PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": "postgres",
                    "PGDATABASE": "thermocline"}
        self.dsn = (f"host=127.0.0.1 port={self.port} dbname=thermocline user=postgres"
                    " connect_timeout=5")

    def __call__(self, *args, timeout=900):
        env = dict(os.environ)
        env.update(self.env)
        t0 = time.time()
        proc = subprocess.run([BACKUP, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, (f"scripts/backup {' '.join(args)} exited {proc.returncode}:"
                                      f"\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return time.time() - t0, proc.stdout


@pytest.fixture
def drill():
    if subprocess.run(["sh", "-c", "command -v pgbackrest"], capture_output=True).returncode:
        pytest.fail("pgbackrest is not installed (scripts/install-deps installs it)")
    d = Drill()
    d("reset")
    d("up")
    yield d
    if not os.environ.get("TC_FAULTS_KEEP_SERVICES"):
        d("reset")


def procedure(name):
    with open(DOC) as f:
        m = re.search(r"<!-- procedure: " + re.escape(name) + r" -->\n```sh\n(.*?)```", f.read(),
                      re.S)
    assert m, f"docs/operations.md has no procedure {name!r}"
    return m.group(1)


def run_procedure(p, name, bindir, env):
    """The block as written, with `thermocline` on PATH configured for this pipeline."""
    os.makedirs(bindir, exist_ok=True)
    wrapper = os.path.join(bindir, "thermocline")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nsub=$1\nshift\nexec " + shlex.quote(p.bin) + ' "$sub" '
                + " ".join(shlex.quote(a) for a in p.settings(p.lake_settings)) + ' "$@"\n')
    os.chmod(wrapper, 0o755)
    e = p.env()
    e.update(env)
    e.update({"PATH": f"{bindir}:{e['PATH']}", "SCHEMA": p.schema, "GROUP": p.group,
              "TOPIC": p.topic})
    t0 = time.time()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", procedure(name)], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (f"{name} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                                  f"{proc.stderr[-8000:]}")
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert marker not in proc.stderr, proc.stderr[-8000:]
    return time.time() - t0, proc


def ingest(p, n, seed):
    p.simulate(n, seed=seed, devices=500, invalid=0.02).wait()
    p.run(p.lake_settings, idle=2)


def store_state(p):
    count = p.sql("SELECT count(*) FROM readings")[0][0]
    keys = set(p.sql("SELECT kafka_partition, kafka_offset FROM readings"))
    offsets = dict(p.sql("SELECT partition, next_offset FROM ingest_offsets"))
    dead = p.sql("SELECT count(*) FROM dead_letters")[0][0]
    return count, keys, offsets, dead


@pytest.mark.parametrize("target", ["backup", "time"])
def test_restore_drill(pipeline, drill, tmp_path, target):
    p = pipeline
    p.dsn = drill.dsn
    lake = str(tmp_path / "lake")
    p.lake_settings = (f"lake.dir={lake}", "lake.roll_seconds=1")
    n = SCALE["readings"]
    p.migrate()

    ingest(p, n, 71)                                    # A
    t_full, _ = drill("backup", "full")
    ingest(p, n, 72)                                    # B
    if target == "backup":
        t_diff, _ = drill("backup", "diff")
        log(f"{SCALE_NAME}: full backup {t_full:.1f} s, differential {t_diff:.1f} s")
        restore_to = "backup"
    else:
        restore_to = p.sql("SELECT clock_timestamp()::text")[0][0]
    at_b = store_state(p)
    assert at_b[0] > 0
    ingest(p, n, 73)                                    # C
    # Everything C committed is archived: a restore to the latest state would hold it.
    drill("check")
    files = files_of(lake)
    assert store_state(p)[0] > at_b[0]

    drill("destroy")
    # First the restore alone, to look at the restored store; then the disaster again and the
    # documented procedure, which restores once more and catches up.
    t_restore, _ = drill("restore", *(["--backup"] if target == "backup" else ["--time", restore_to]))
    restored = store_state(p)
    assert restored == at_b, (f"restored store: {restored[0]} readings, offsets {restored[2]}; "
                              f"at the restore point: {at_b[0]}, {at_b[2]}")
    drill("destroy")
    t_proc, proc = run_procedure(p, "restore-store", str(tmp_path / "bin"),
                                 dict(drill.env, RESTORE_TO=restore_to))
    assert "0 bad, 0 temporary" in proc.stdout, proc.stdout[-2000:]
    log(f"{SCALE_NAME}: restore to the {target} ({at_b[0]} readings) {t_restore:.1f} s; the "
        f"procedure (restore, migrate, catch-up of {3 * n - sum(at_b[2].values())} messages, "
        f"verify) {t_proc:.1f} s")

    assert_exact(p, lake)
    # The rollups and the latest state came back with their own marks and caught up exactly.
    for table, width in (("rollup_1m_live", "1 minute"), ("rollup_1h_live", "1 hour")):
        assert rollup_mismatches(p, table, width) == [], table
    assert latest_mismatches(p) == []
    assert p.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == p.sql("SELECT count(*) FROM readings")[0][0]
    # The lake was complete before the disaster: not one file was written again or added.
    assert files_of(lake) == files
