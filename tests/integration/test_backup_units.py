"""The systemd units of deploy/systemd/ that schedule the store's backups and run lake
replication: systemd-analyze verifies every one (syntax, calendar specifications, the unit each
timer starts), and the timers fire when docs/operations.md says they do."""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

UNITS = os.path.join(ROOT, "deploy", "systemd")


def verify(tmp_path, *names):
    """systemd-analyze verify on copies of the units, with the backup template instantiated."""
    for f in glob.glob(os.path.join(UNITS, "*")):
        shutil.copy(f, tmp_path)
    for kind in ("full", "diff"):
        shutil.copy(os.path.join(UNITS, "thermocline-backup@.service"),
                    tmp_path / f"thermocline-backup@{kind}.service")
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:")
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def need_systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")


def test_backup_units_verify(tmp_path):
    proc = verify(tmp_path, "thermocline-backup-full.timer", "thermocline-backup-diff.timer",
                  "thermocline-backup@full.service", "thermocline-backup@diff.service")
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_replica_unit_verifies_but_for_the_binary(tmp_path):
    # /usr/bin/thermocline exists only where the package is installed.
    proc = verify(tmp_path, "thermocline-lake-replica.service")
    problems = [line for line in proc.stderr.splitlines()
                if line.strip() and "/usr/bin/thermocline is not executable" not in line]
    assert not problems, proc.stderr


def test_a_broken_timer_is_caught(tmp_path):
    proc = verify(tmp_path, "thermocline-backup-full.timer")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "thermocline-backup-full.timer") as f:
        text = f.read()
    with open(tmp_path / "thermocline-backup-full.timer", "w") as f:
        f.write(text.replace("OnCalendar=Sun", "OnCalendar=Sunday-ish"))
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           "thermocline-backup-full.timer"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "calendar" in proc.stderr


def test_timers_fire_as_documented():
    def next_elapse(spec):
        out = subprocess.run(["systemd-analyze", "calendar", "--iterations=7", spec],
                             capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, TZ="UTC")).stdout
        return [line.split(":", 1)[1].strip().split()[0] for line in out.splitlines()
                if "Next elapse:" in line or "Iter. #" in line]

    def spec(name):
        with open(os.path.join(UNITS, name)) as f:
            return next(l.split("=", 1)[1].strip() for l in f if l.startswith("OnCalendar="))

    full = next_elapse(spec("thermocline-backup-full.timer"))
    diff = next_elapse(spec("thermocline-backup-diff.timer"))
    assert len(full) == 7 and all(d == "Sun" for d in full), full
    assert sorted(set(diff)) == ["Fri", "Mon", "Sat", "Thu", "Tue", "Wed"], diff
