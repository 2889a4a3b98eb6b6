"""The Debian package (`make deb`): installed with dpkg on this machine, it creates its system user,
ships the configuration as protected conffiles and the systemd units with their hardening; then the
units' ExecStart lines, run as that user the way systemd would (the machine has no systemd running:
environment from the unit's EnvironmentFile, the unit's User=), ingest readings exactly once into
the store and the lake in the user's state directory, answer /healthz and /readyz, serve the
registry, and stop cleanly on SIGTERM. The package is purged at the end.

It installs system-wide, so it needs root and holds /tmp/tc-deb.lock; the package file is
THERMOCLINE_DEB, else build/thermocline_*.deb (`make integration` builds it first)."""

import fcntl
import glob
import json
import os
import grp
import pwd
import shlex
import signal
import socket
import stat
import subprocess
import time
import urllib.request

import psycopg
import pyarrow.dataset as ds
import pytest

from conftest import ROOT
from test_pipeline import assert_store_matches

UNITS = ("thermocline.service", "thermocline-registry.service")
UNIT_DIR = "/lib/systemd/system"
ENV_FILE = "/etc/default/thermocline"
CONFIG = "/etc/thermocline/thermocline.yaml"
STATE = "/var/lib/thermocline"
# What every unit must say to confine the process (see deploy/systemd/).
HARDENING = {
    "User": "thermocline", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
}


def deb_path():
    path = os.environ.get("THERMOCLINE_DEB")
    if not path:
        found = sorted(glob.glob(os.path.join(ROOT, "build", "thermocline_*.deb")))
        assert found, "no build/thermocline_*.deb: run `make deb` (or set THERMOCLINE_DEB)"
        path = found[-1]
    return path


def unit(name):
    """A unit file as {key: [values]} (a key may repeat, as SystemCallFilter does)."""
    out = {}
    with open(os.path.join(UNIT_DIR, name)) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def environment_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def log_of(proc):
    with open(proc.log_path) as f:
        return f.read()[-6000:]


def wait_http(url, proc, timeout=60):
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, f"exited {proc.returncode}: {log_of(proc)}"
        try:
            return get(url)
        except OSError:
            assert time.time() < deadline, f"{url} did not answer within {timeout} s"
            time.sleep(0.2)


def as_service(name, extra_args, env_overrides, log_path):
    """Start a unit's ExecStart as its User=/Group= with its EnvironmentFile, like systemd; its
    output goes to log_path (kept as proc.log_path)."""
    u = unit(name)
    argv = shlex.split(u["ExecStart"][0]) + extra_args
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(environment_file(u["EnvironmentFile"][0].lstrip("-")))
    env.update(env_overrides)
    cmd = ["setpriv", f"--reuid={u['User'][0]}", f"--regid={u['Group'][0]}", "--init-groups",
           "--no-new-privs", "--", *argv]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=u.get("WorkingDirectory", ["/"])[0], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path
    return proc


@pytest.fixture
def installed():
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    deb = deb_path()
    with open("/tmp/tc-deb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # --force-confnew: a run that died before its purge left a modified conffile behind.
        proc = subprocess.run(["dpkg", "-i", "--force-confnew", deb], capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"dpkg -i {deb}:\n{proc.stdout}\n{proc.stderr}"
        try:
            yield deb
        finally:
            proc = subprocess.run(["dpkg", "--purge", "thermocline"], capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            assert not os.path.exists("/usr/bin/thermocline")
            assert not os.path.exists(ENV_FILE) and not os.path.exists(CONFIG)


def test_deb_installs_and_runs(installed, tc, tmp_path):
    # What dpkg installed.
    info = subprocess.run(["dpkg-deb", "-f", installed, "Package", "Version", "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert "Package: thermocline" in info and "librdkafka1" in info and "libpq5" in info, info
    listed = subprocess.run(["dpkg", "-L", "thermocline"], capture_output=True, text=True,
                            check=True).stdout.split()
    for path in ("/usr/bin/thermocline", CONFIG, ENV_FILE, *(f"{UNIT_DIR}/{u}" for u in UNITS)):
        assert path in listed, f"{path} is not in the package"
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "thermocline"],
                               capture_output=True, text=True, check=True).stdout
    assert CONFIG in conffiles and ENV_FILE in conffiles, conffiles
    version = subprocess.run(["/usr/bin/thermocline", "version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip(), version

    # The dedicated system user, made by postinst, owning its state directory; the files that may
    # hold secrets readable by root and its group only.
    user = pwd.getpwnam("thermocline")
    assert user.pw_uid < 1000 and user.pw_shell.endswith("nologin")
    assert grp.getgrgid(user.pw_gid).gr_name == "thermocline"
    st = os.stat(STATE)
    assert st.st_uid == user.pw_uid and stat.S_IMODE(st.st_mode) == 0o750
    for path in (CONFIG, ENV_FILE):
        st = os.stat(path)
        assert st.st_uid == 0 and st.st_gid == user.pw_gid, path
        assert stat.S_IMODE(st.st_mode) == 0o640, f"{path}: {oct(st.st_mode)}"

    # The units: hardening options, and systemd's own verdict where systemd is installed.
    for name in UNITS:
        u = unit(name)
        for key, want in HARDENING.items():
            assert want in u.get(key, []), f"{name}: {key}={want} missing ({u.get(key)})"
        assert u["ExecStart"][0].startswith("/usr/bin/thermocline ")
    if subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        proc = subprocess.run(["systemd-analyze", "verify", *(f"{UNIT_DIR}/{u}" for u in UNITS)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    # Smoke run: the operator's settings go into the EnvironmentFile, as documented there.
    lake = os.path.join(STATE, f"lake-{tc.schema}")
    with open(ENV_FILE, "a") as f:
        f.write(f"THERMOCLINE_KAFKA_BROKERS={tc.brokers}\nTHERMOCLINE_PG_DSN={tc.dsn}\n"
                f"THERMOCLINE_LAKE_DIR={lake}\n")
    http = free_port()
    test_env = {"THERMOCLINE_KAFKA_TOPIC": tc.topic, "THERMOCLINE_KAFKA_GROUP": tc.group,
                "THERMOCLINE_HTTP_LISTEN": f"127.0.0.1:{http}"}
    sets = ["--set", f"postgres.schema={tc.schema}", "--set", "postgres.timescaledb=off",
            "--set", "kafka.partitions=2", "--set", "log.format=json"]
    migrate = subprocess.run(
        ["setpriv", "--reuid=thermocline", "--regid=thermocline", "--init-groups", "--",
         "/usr/bin/thermocline", "migrate", "--config", CONFIG, *sets],
        env={**environment_file(ENV_FILE), **test_env, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr[-4000:]
    tc.partitions = 2
    summary = tc.simulate("--devices", "50", "--count", "3000", "--invalid-ratio", "0.02",
                          "--seed", "7")
    assert summary["failed"] == 0

    run = as_service("thermocline.service", sets, test_env, tmp_path / "run.log")
    registry_port = free_port()
    registry = as_service("thermocline-registry.service",
                          ["--listen", f"127.0.0.1:{registry_port}",
                           "--schema", f"{tc.schema}_registry"], {}, tmp_path / "registry.log")
    try:
        assert wait_http(f"http://127.0.0.1:{http}/healthz", run)[0] == 200
        exp = tc.oracle().expect()
        deadline = time.time() + 180
        while True:
            assert run.poll() is None, log_of(run)
            offsets = dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets") or [])
            if all(offsets.get(q, 0) >= e for q, e in exp["ends"].items() if e > 0):
                break
            assert time.time() < deadline, f"not caught up: {offsets} vs {exp['ends']}"
            time.sleep(0.3)
        status, body = get(f"http://127.0.0.1:{http}/readyz")
        assert status == 200, body
        status, body = wait_http(f"http://127.0.0.1:{registry_port}/subjects", registry)
        assert status == 200 and json.loads(body) == [], body
        # The processes really run as the service user.
        for proc in (run, registry):
            with open(f"/proc/{proc.pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert set(uids) == {str(pwd.getpwnam("thermocline").pw_uid)}, uids
        run.send_signal(signal.SIGTERM)
        registry.send_signal(signal.SIGTERM)
        assert run.wait(timeout=120) == 0, log_of(run)
        assert registry.wait(timeout=60) == 0, log_of(registry)
    finally:
        for proc in (run, registry):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with psycopg.connect(tc.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{tc.schema}_registry" CASCADE')
    assert_store_matches(tc, exp)
    files = glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet"))
    assert files, f"no lake file under {lake}"
    assert all(os.stat(f).st_uid == pwd.getpwnam("thermocline").pw_uid for f in files)
    t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet", partitioning="hive").to_table()
    keys = set(zip(t.column("kafka_partition").to_pylist(), t.column("kafka_offset").to_pylist()))
    assert t.num_rows == exp["valid"] and len(keys) == t.num_rows
    assert keys == set(tc.sql("SELECT kafka_partition, kafka_offset FROM readings"))
