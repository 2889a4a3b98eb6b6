"""What a new user runs first, as they would run it: the README's "Using it" block, the demo and the
hints it prints, and `thermocline topics create` before the first `run`. The commands are taken
from README.md and from the demo's output, so the documentation and these tests cannot drift
apart; they run with this test's own topic, group, schema and lake."""

import os
import re
import shlex
import subprocess

import psycopg
import pytest

from conftest import ROOT, Thermocline


# What `scripts/dev-services env` exports: a new shell has none of it until it runs that.
ENV_OUTPUT = ("THERMOCLINE_KAFKA_BROKERS", "THERMOCLINE_PG_DSN", "THERMOCLINE_LAKE_DIR",
              "THERMOCLINE_KAFKA_HOME", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER")


def fresh_shell_env(tc):
    """A new shell's environment: none of the dev services' variables, which the commands must set
    themselves (`eval "$(scripts/dev-services env)"`)."""
    return {k: v for k, v in tc.env().items() if k not in ENV_OUTPUT}


def bash(script, env, timeout=600):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_topics_create_before_the_first_run(tc):
    """Devices may produce before the first `run`: `topics create` makes the topic with the
    configured partitions (the broker does not create topics by itself)."""
    tc.partitions = 3
    p = tc.cmd("topics", "ls")
    assert re.search(rf"^{re.escape(tc.topic)} +missing$", p.stdout, re.M), p.stdout
    p = tc.cmd("topics", "create")
    assert re.search(rf"^{re.escape(tc.topic)} +3 partitions, replication 1$", p.stdout, re.M), p.stdout
    tc.cmd("topics", "create")  # idempotent
    # A device fleet that cannot create topics (kafka.create_topic=false) produces before `run`.
    s = tc.simulate("--devices", "20", "--count", "600", "--invalid-ratio", "0", "--seed", "7",
                    "--set", "kafka.create_topic=false")
    assert s["failed"] == 0 and s["produced"] == 600, s
    tc.migrate()
    r = tc.run(idle=2, extra=("kafka.create_topic=false",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 600
    # A partition with nothing stored is read from the start, and the log says so in words.
    assert "from the start (nothing stored yet)" in r.stderr
    assert "offset -1" not in r.stderr and "at -1" not in r.stderr
    p = tc.cmd("topics", "ls")
    assert re.search(rf"^{re.escape(tc.topic)} +3 partitions", p.stdout, re.M), p.stdout


def readme_block(title):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## " + re.escape(title) + r"\n\n```sh\n(.*?)```", text, re.S | re.M)
    assert m, f"README.md has no sh block under ## {title}"
    return m.group(1)


def test_readme_using_it_runs_as_written(tc, tmp_path):
    """README "Using it", line by line, in a new shell. `build/thermocline` is a wrapper that adds
    this test's topic, group, schema and lake; the schema name in the SQL is this test's."""
    tc.partitions = 2
    root = tmp_path / "repo"
    (root / "build").mkdir(parents=True)
    os.symlink(os.path.join(ROOT, "scripts"), root / "scripts")
    lake = tmp_path / "lake"
    settings = " ".join(shlex.quote(a) for a in tc.settings((f"lake.dir={lake}",)))
    wrapper = root / "build" / "thermocline"
    wrapper.write_text("#!/bin/sh\nsub=$1\nshift\nexec " + shlex.quote(os.path.abspath(tc.bin))
                       + ' "$sub" ' + settings + ' "$@"\n')
    wrapper.chmod(0o755)
    block = readme_block("Using it").replace("telemetry.", f"{tc.schema}.")
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=root, env=fresh_shell_env(tc),
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-8000:]}"
    tc.assert_clean(p.stderr)
    stored = tc.sql("SELECT count(*) FROM readings")[0][0]
    dead = tc.sql("SELECT count(*) FROM dead_letters")[0][0]
    assert stored + dead == 100000 and dead > 0
    # psql's count, `dlq count`'s total and `lake ls`'s total row are in the output.
    assert re.search(rf"^\s*{stored}$", p.stdout, re.M), p.stdout[-3000:]
    assert re.search(rf"^total\s+{dead}$", p.stdout, re.M), p.stdout[-3000:]
    assert re.search(rf"^total\s+\d+\s+{stored}\s+\d+$", p.stdout, re.M), p.stdout[-3000:]


class Demo:
    """One demo run's names; what it made is removed at the end."""

    def __init__(self, tmp_path, tag):
        self.tc = Thermocline(tag)
        self.lake = tmp_path / f"lake-{tag}"
        self.env = self.tc.env()
        self.env.update({
            "DEMO_TOPIC": self.tc.topic, "DEMO_SCHEMA": self.tc.schema, "DEMO_GROUP": self.tc.group,
            "DEMO_LAKE_DIR": str(self.lake), "DEMO_COUNT": "2000", "DEMO_RATE": "2000",
            "DEMO_DEVICES": "50", "THERMOCLINE_BIN": os.path.abspath(self.tc.bin),
            # Any free port for /healthz: pipelines of other tests run side by side.
            "THERMOCLINE_HTTP_LISTEN": "127.0.0.1:0",
        })

    def run(self):
        return subprocess.run([os.path.join(ROOT, "scripts", "demo")], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=600)

    def marker(self):
        state = subprocess.run([os.path.join(ROOT, "scripts", "dev-services"), "env"],
                               capture_output=True, text=True, check=True).stdout
        d = re.search(r"^export THERMOCLINE_STATE_DIR=(.*)$", state, re.M).group(1)
        return os.path.join(shlex.split(d)[0], "demo", f"made-{self.tc.topic}-{self.tc.schema}")

    def cleanup(self):
        self.tc.drop()
        if os.path.exists(self.marker()):
            os.unlink(self.marker())


@pytest.fixture
def demo(tmp_path):
    d = Demo(tmp_path, "demo")
    yield d
    d.cleanup()


def hints(stdout):
    return [line[4:] for line in stdout.splitlines() if line.startswith("  $ ")]


def test_demo_hints_work_as_printed_and_a_rerun_resets_only_its_own(demo):
    p = demo.run()
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-8000:]}"
    assert "a first run: the demo makes topic" in p.stdout
    cmds = hints(p.stdout)
    assert cmds[0] == 'eval "$(scripts/dev-services env)"', cmds
    assert any("dead_letters" in c for c in cmds) and any("lake verify" in c for c in cmds), cmds
    # The demo's own invalid readings include bytes that are not UTF-8: the dead-letter hint must
    # show them (convert_from(payload, 'UTF8') failed on them).
    with psycopg.connect(demo.tc.dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {demo.tc.schema}.dead_letters"
                            " WHERE reason = 'invalid_utf8'").fetchone()[0] > 0
        with pytest.raises(psycopg.Error):
            conn.execute(f"SELECT convert_from(payload, 'UTF8') FROM {demo.tc.schema}.dead_letters")
    # Every hint, as printed, in a new shell from the repository.
    h = bash("\n".join(cmds), env=fresh_shell_env(demo.tc))
    assert h.returncode == 0, f"exit {h.returncode}\n{h.stdout[-4000:]}\n{h.stderr[-8000:]}"
    demo.tc.assert_clean(h.stderr)
    assert re.search(r"^\d+ files, \d+ rows, 0 bad, 0 temporary$", h.stdout, re.M), h.stdout[-3000:]
    assert "invalid_utf8" in h.stdout and "out_of_range" in h.stdout
    # Dead-letter details print numbers as written, not with 17 digits.
    details = [line for line in h.stdout.splitlines() if " is outside [" in line]
    assert details and not any(re.search(r"\d\.\d{14,}", line) for line in details), details
    stored = demo.tc.sql("SELECT count(*) FROM readings")[0][0]

    # A rerun says what it resets, before it does, and starts from a clean slate.
    p = demo.run()
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-8000:]}"
    said = p.stdout.find("resetting what the previous demo run made: topic " + demo.tc.topic)
    assert 0 <= said < p.stdout.find("creating the topic"), p.stdout[:2000]
    assert demo.tc.sql("SELECT count(*) FROM readings")[0][0] == stored


def test_demo_leaves_what_it_did_not_make_alone(tmp_path):
    d = Demo(tmp_path, "demoown")
    try:
        with psycopg.connect(d.tc.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{d.tc.schema}"')
            conn.execute(f'CREATE TABLE "{d.tc.schema}".mine (x int)')
        p = d.run()
        assert p.returncode == 1, p.stdout + p.stderr
        assert f"schema {d.tc.schema} already exist(s), and no earlier demo run made them" in p.stderr
        with psycopg.connect(d.tc.dsn, autocommit=True) as conn:
            assert conn.execute(f'SELECT count(*) FROM "{d.tc.schema}".mine').fetchone()[0] == 0
        p = d.tc.cmd("topics", "ls")
        assert re.search(rf"^{re.escape(d.tc.topic)} +missing$", p.stdout, re.M), p.stdout
        assert not os.path.exists(d.marker())
    finally:
        d.cleanup()
