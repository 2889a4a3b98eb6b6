"""The command line: help, configuration precedence, errors, generated docs."""

import os
import subprocess

import pytest

from conftest import ROOT, Thermocline

BIN = os.environ.get("THERMOCLINE_BIN", os.path.join(ROOT, "build", "thermocline"))


def run(*args, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=e, timeout=60, **kw)


@pytest.mark.parametrize("sub", ["run", "migrate", "simulate"])
def test_every_subcommand_has_help(sub):
    p = run(sub, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(f"usage: thermocline {sub}")
    assert "--config" in p.stdout and "--set" in p.stdout


def test_usage_and_version():
    assert run().returncode == 2
    p = run("--help")
    assert p.returncode == 0 and all(c in p.stdout for c in ("run", "migrate", "simulate", "config", "version"))
    p = run("version")
    assert p.returncode == 0 and p.stdout.startswith("thermocline ")
    p = run("frobnicate")
    assert p.returncode == 2 and 'unknown command "frobnicate"' in p.stderr


def test_precedence_file_then_env_then_set(tmp_path):
    cfg = tmp_path / "tc.yaml"
    cfg.write_text("kafka:\n  topic: from-file\n  group: file-group\npipeline:\n  batch_size: 77\n"
                   "rdkafka:\n  fetch.wait.max.ms: 25\n")
    p = run("config", "show", "--config", str(cfg), "--set", "pipeline.batch_size=88",
            env={"THERMOCLINE_KAFKA_TOPIC": "from-env"})
    assert p.returncode == 0, p.stderr
    shown = dict(line.split(" = ", 1) for line in p.stdout.splitlines())
    assert shown["kafka.topic"] == "from-env"
    assert shown["kafka.group"] == "file-group"
    assert shown["pipeline.batch_size"] == "88"
    assert shown["rdkafka.fetch.wait.max.ms"] == "25"


def test_unknown_key_and_bad_values_are_refused(tmp_path):
    cfg = tmp_path / "tc.yaml"
    cfg.write_text("kafka:\n  topik: x\n")
    p = run("config", "show", "--config", str(cfg))
    assert p.returncode == 2 and 'unknown configuration key "kafka.topik"' in p.stderr
    p = run("config", "show", "--set", "pipeline.batch_size=0")
    assert p.returncode == 2 and "pipeline.batch_size" in p.stderr and "outside" in p.stderr
    p = run("config", "show", env={"THERMOCLINE_PG_DSN": ""}, )
    assert p.returncode == 0
    p = run("run", "--set", "rdkafka.no.such.property=1", "--exit-when-idle", "1")
    assert p.returncode == 1 and "no.such.property" in p.stderr
    cfg.write_text("kafka: [1, 2]\n")
    p = run("config", "show", "--config", str(cfg))
    assert p.returncode == 2 and "line 1" in p.stderr


def test_generated_docs_are_current():
    p = run("config", "reference")
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        assert f.read() == p.stdout, "docs/configuration.md is stale: run `make docs`"
    p = run("config", "sample")
    with open(os.path.join(ROOT, "config", "thermocline.sample.yaml")) as f:
        assert f.read() == p.stdout, "config/thermocline.sample.yaml is stale: run `make docs`"


def test_sample_config_loads_and_equals_defaults():
    defaults = run("config", "show").stdout
    p = run("config", "show", "--config", os.path.join(ROOT, "config", "thermocline.sample.yaml"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == defaults


def test_migrate_reports_a_dead_database():
    t = Thermocline("cli")
    p = subprocess.run([BIN, "migrate", "--set", "postgres.dsn=host=127.0.0.1 port=1 connect_timeout=2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "could not connect to PostgreSQL" in p.stderr
    del t
