"""The command line: help, configuration precedence, errors, generated docs."""

import glob
import os
import re
import subprocess
import time

import pytest

from conftest import ROOT, Thermocline

BIN = os.environ.get("THERMOCLINE_BIN", os.path.join(ROOT, "build", "thermocline"))


def run(*args, env=None, timeout=60, **kw):
    e = dict(os.environ)
    e.pop("THERMOCLINE_LAKE_DIR", None)  # the dev services' lake: not these tests'
    e.update(env or {})
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=e, timeout=timeout, **kw)


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
    # Where it tried, the setting to check and the likely fix, on one line (libpq's message has a
    # line break and a tab of its own).
    assert "port 1" in p.stderr and "postgres.dsn (THERMOCLINE_PG_DSN)" in p.stderr
    assert 'eval "$(scripts/dev-services env)"' in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "\t" not in p.stderr, p.stderr
    del t


# Addresses where nothing answers: a command that contacted a service while printing its help
# would fail or hang on them.
NO_SERVICES = {"THERMOCLINE_KAFKA_BROKERS": "127.0.0.1:1",
               "THERMOCLINE_PG_DSN": "host=127.0.0.1 port=1 dbname=x connect_timeout=1",
               "THERMOCLINE_REGISTRY_URL": "http://127.0.0.1:1"}


def commands():
    """(command, [subcommands]) from `thermocline --help`, which lists main.c's dispatch table."""
    p = run("--help")
    assert p.returncode == 0
    body = p.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    out = []
    for line in body.splitlines():
        m = re.match(r"  (\S+)(?: (\S+))?\s{2,}\S", line)
        assert m, f"unexpected line in the command list: {line!r}"
        out.append((m.group(1), m.group(2).split("|") if m.group(2) else []))
    return out


def test_every_command_and_subcommand_has_help():
    cmds = commands()
    assert {"run", "migrate", "topics", "schema", "config", "lake", "dlq"} <= {c for c, _ in cmds}
    for cmd, subs in cmds:
        for argv in [[cmd, "--help"], *[[cmd, sub, "--help"] for sub in subs],
                     # --help wins over everything else on the line, a broken --config too.
                     [cmd, *subs[:1], "--config", "/nonexistent.yaml", "--set", "no.such=1", "-h"]]:
            t0 = time.monotonic()
            p = run(*argv, env=NO_SERVICES, timeout=10)
            assert p.returncode == 0, f"{argv}: exit {p.returncode}\n{p.stderr}"
            assert p.stdout.startswith(f"usage: thermocline {cmd}"), f"{argv}: {p.stdout[:200]!r}"
            assert "--config FILE" in p.stdout and "--set KEY=VALUE" in p.stdout, argv
            assert p.stderr == "", f"{argv}: {p.stderr}"
            assert time.monotonic() - t0 < 5, f"{argv} took {time.monotonic() - t0:.1f} s"


def test_every_command_refuses_unknown_options_and_stray_arguments():
    for cmd, subs in commands():
        head = [cmd, *subs[:1]]
        cases = [([*head, "--no-such-option"], 'unknown option "--no-such-option"'),
                 ([*head, "-Q"], 'unknown option "-Q"'),
                 ([*head, "--set"], 'option "--set" needs a value')]
        if subs:
            cases.append(([cmd, "no-such-subcommand"], 'unknown subcommand "no-such-subcommand"'))
            cases.append(([cmd], "missing a subcommand"))
        elif cmd != "replay":  # replay's first complaint is its missing range
            cases.append(([cmd, "stray-argument"], 'unexpected argument "stray-argument"'))
        for argv, want in cases:
            p = run(*argv, env=NO_SERVICES, timeout=10)
            assert p.returncode == 2, f"{argv}: exit {p.returncode}\n{p.stdout}{p.stderr}"
            assert want in p.stderr, f"{argv}: {p.stderr}"
            # The usage lines, on stderr, and nothing on stdout.
            assert f"usage: thermocline {cmd}" in p.stderr and p.stdout == "", f"{argv}: {p.stderr}"


def test_every_command_takes_config_and_set(tmp_path):
    """--config and --set are checked by every command, not ignored (a typo is an error)."""
    cfg = tmp_path / "tc.yaml"
    cfg.write_text("log:\n  level: warn\n")
    p = run("version", "--config", str(cfg), "--set", "log.level=debug")
    assert p.returncode == 0 and p.stdout.startswith("thermocline "), p.stderr
    for argv in (["version"], ["config", "reference"], ["config", "sample"], ["schema", "ls"],
                 ["lake", "ls"], ["topics", "ls"], ["run"], ["migrate"]):
        p = run(*argv, "--set", "foo=bar", env=NO_SERVICES, timeout=10)
        assert p.returncode == 2 and 'unknown configuration key "foo"' in p.stderr, (argv, p.stderr)


def test_numbers_are_strict():
    for argv in (["simulate", "--count", "1.5"], ["simulate", "--count", "1e3"],
                 ["simulate", "--devices", "10x"], ["simulate", "--seed", "-1"],
                 ["simulate", "--count", "99999999999999999999"],
                 ["run", "--exit-when-idle", "0.5"], ["dlq", "ls", "--limit", "5.0"],
                 ["lake", "compact", "--day", "2026-01-01", "--min-age-days", "2.5"]):
        p = run(*argv, env=NO_SERVICES, timeout=10)
        assert p.returncode == 2, f"{argv}: exit {p.returncode}: {p.stderr}"
        assert "must be an integer" in p.stderr, (argv, p.stderr)


def test_config_cross_checks_and_duplicated_keys(tmp_path):
    p = run("config", "show", "--set", "validation.temperature_min=100",
            "--set", "validation.temperature_max=-50")
    assert p.returncode == 2
    assert "validation.temperature_min (100) is above validation.temperature_max (-50)" in p.stderr
    # The check runs after every source: a file's bounds fixed by --set are fine.
    cfg = tmp_path / "tc.yaml"
    cfg.write_text("validation:\n  humidity_min: 90\n  humidity_max: 10\n")
    assert run("config", "show", "--config", str(cfg)).returncode == 2
    assert run("config", "show", "--config", str(cfg), "--set", "validation.humidity_max=95").returncode == 0
    cfg.write_text("kafka:\n  topic: a\n  group: g\n  topic: b\n")
    p = run("config", "show", "--config", str(cfg))
    assert p.returncode == 2
    assert 'line 4 column 3: duplicated key "kafka.topic" (first at line 2 column 3)' in p.stderr
    p = run("config", "show", "--set", "log.level=verbose")
    assert p.returncode == 2
    assert 'invalid value for "log.level": "verbose" (allowed: debug, info, warn, error)' in p.stderr
    assert "log.format" not in p.stderr


@pytest.mark.parametrize("brokers,want", [
    ("", "kafka.brokers is empty"),
    # PostgreSQL's port answers Kafka's first request with bytes that are no Kafka response.
    ("127.0.0.1:{pg_port}", "answered, but not as a Kafka broker"),
    ("127.0.0.1:1", 'no Kafka broker answered at kafka.brokers "127.0.0.1:1"'),
])
def test_a_wrong_broker_address_fails_fast_and_says_what_to_check(brokers, want):
    pg_port = re.search(r"port=(\d+)", os.environ["THERMOCLINE_PG_DSN"]).group(1)
    brokers = brokers.format(pg_port=pg_port)
    for argv in (["topics", "create"], ["simulate", "--count", "1"], ["run"]):
        t0 = time.monotonic()
        p = run(*argv, "--set", "kafka.topic=it-wrong-broker", "--set", "log.format=human",
                env={"THERMOCLINE_KAFKA_BROKERS": brokers}, timeout=60)
        took = time.monotonic() - t0
        assert p.returncode in (1, 2), (argv, p.stderr)
        assert want in p.stderr, (argv, p.stderr)
        assert "kafka.brokers" in p.stderr and "$(scripts/dev-services env)" in p.stderr, (argv, p.stderr)
        assert took < 15, f"{argv} with kafka.brokers={brokers!r} took {took:.1f} s"


def doc_files():
    return [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


FILE_EXTENSIONS = {"c", "h", "py", "md", "sh", "yml", "yaml", "json", "sql", "txt", "parquet"}


def test_config_keys_named_in_docs_exist():
    """Every `section.key` the docs name is a setting: the keys of docs/configuration.md's table
    (from `config show`), rdkafka.* properties, or a section. A name whose last part is a setting's
    (`limits.max_age_s`) or whose first part is a section (`kafka.topik`) must be a real key."""
    keys = {line.split(" = ", 1)[0] for line in run("config", "show").stdout.splitlines()}
    # Names that look like settings and are not: the lake files' key-value metadata.
    keys |= {"kafka.partition", "kafka.first_offset", "kafka.last_offset"}
    # SQL objects of the api and the audit log (docs/api.md), whose schemas share the sections' names.
    sql_objects = {f"api.{o}" for o in ("devices", "latest", "readings_raw", "readings_1m", "readings_1h",
                                        "readings", "fleet", "quality", "quality_fleet", "anomalies",
                                        "dead_letters", "dead_letter_counts", "site_access", "version",
                                        "features_online")}
    sql_objects |= {f"audit.{o}" for o in ("events", "record", "verify", "canonical")}
    # Audit actions (docs/api.md's table of what is recorded), which share the sections' names too.
    sql_objects |= {"api.request"}
    sections = {k.split(".", 1)[0] for k in keys}
    leaves = {k.rsplit(".", 1)[1] for k in keys}
    bad = []
    for path in doc_files():
        with open(path) as f:
            text = f.read()
        for tok in re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)+)(?:=[^`]*)?`", text):
            first, last = tok.split(".", 1)[0], tok.rsplit(".", 1)[1]
            # A file name (`pipeline.c`, `store.h`) is not a setting, even where its stem is a
            # section's name.
            if last in FILE_EXTENSIONS:
                continue
            if first == "rdkafka" or tok in keys or tok in sections or tok in sql_objects:
                continue
            if first in sections or last in leaves:
                bad.append(f"{os.path.relpath(path, ROOT)}: `{tok}`")
    assert not bad, "configuration keys in the docs that do not exist:\n" + "\n".join(bad)


def test_enumerated_settings_refuse_nonsense():
    """An enumerated setting takes one of its values, checked as it is loaded: the message names
    the key and the values allowed, and nothing else runs."""
    for key, bad, allowed in (("postgres.timescaledb", "maybe", "auto, on, off"),
                              ("lake.codec", "lz4", "snappy, zstd, none"),
                              ("log.format", "xml", "json, human, auto")):
        p = run("migrate", "--set", f"{key}={bad}", "--set", "postgres.dsn=host=127.0.0.1 port=1")
        assert p.returncode == 2, (key, p.stdout, p.stderr)
        assert f'invalid value for "{key}": "{bad}" (allowed: {allowed})' in p.stderr, p.stderr
        assert "out of memory" not in p.stderr and "could not connect" not in p.stderr
    p = run("run", "--help")
    reload_list = p.stdout.split("Settings SIGHUP reloads:", 1)[1]
    assert "validation.max_age_s" in reload_list and "log.level" in reload_list
    assert "kafka.brokers" not in reload_list


def test_a_bad_schema_name_is_named_not_out_of_memory():
    p = run("migrate", "--set", "postgres.schema=tele'metry",
            "--set", "postgres.dsn=host=127.0.0.1 port=1 connect_timeout=2")
    assert p.returncode == 1, p.stderr
    assert "postgres.schema" in p.stderr and "quote" in p.stderr, p.stderr
    assert "out of memory" not in p.stderr


def test_a_bad_lake_codec_is_refused_before_the_topic_is_created(tc):
    from confluent_kafka.admin import AdminClient
    p = tc.cmd("run", "--exit-when-idle", "1", extra=("lake.codec=lz4",), check=False)
    assert p.returncode == 2 and '"lake.codec": "lz4"' in p.stderr, p.stderr
    topics = AdminClient({"bootstrap.servers": tc.brokers}).list_topics(timeout=30).topics
    assert tc.topic not in topics, "run created the topic before refusing its configuration"
