"""What the fault scenarios share: a private Kafka broker and PostgreSQL cluster (started by
scripts/dev-services under a state directory and ports of their own, so that stopping them never
disturbs anything else), pipelines running as child processes whose logs are read as they come,
a simulator producing in the background, and the end-state check every scenario ends with.

The end-state check compares against tests/integration/oracle.py, which reads the topic back and
decides independently which readings must be stored and which must become dead letters."""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal

import duckdb
import psycopg
import pyarrow.dataset as ds
from confluent_kafka import Consumer, TopicPartition

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from oracle import METRICS, Oracle  # noqa: E402

DEV = os.path.join(ROOT, "scripts", "dev-services")

# Sizes: the bounded form runs in `make test`, the full form in `make test-faults`. Each figure can
# be overridden on its own (TC_FAULTS_KILL_READINGS=... and so on).
SCALES = {
    "bounded": {"kill_readings": 60_000, "kills": 10, "readings": 20_000, "group_kills": 6},
    "full": {"kill_readings": 500_000, "kills": 12, "readings": 100_000, "group_kills": 20},
}
SCALE_NAME = os.environ.get("TC_FAULTS", "bounded")
if SCALE_NAME not in SCALES:
    raise SystemExit(f"TC_FAULTS={SCALE_NAME}: expected bounded or full")
SCALE = {k: int(os.environ.get(f"TC_FAULTS_{k.upper()}", v)) for k, v in SCALES[SCALE_NAME].items()}

# A dead member's partitions move after its session times out; the broker's floor is 6 s.
SESSION_TIMEOUT_MS = 6000


def log(msg):
    """A line of the scenario's report (shown with pytest -s, and kept in the failure output)."""
    print(f"faults: {msg}", flush=True)


class Services:
    """The private broker and cluster; stop/start them with the same environment as `up`."""

    def __init__(self):
        if os.geteuid() == 0:
            state = "/var/lib/thermocline-faults"
        else:
            state = os.path.join(os.path.expanduser("~"), ".cache", "thermocline-faults")
        self.kafka_port = int(os.environ.get("TC_FAULTS_KAFKA_PORT", "29092"))
        self.pg_port = int(os.environ.get("TC_FAULTS_PG_PORT", "25432"))
        self.env = dict(os.environ)
        self.env.update({
            "THERMOCLINE_STATE_DIR": os.environ.get("TC_FAULTS_STATE_DIR", state),
            "THERMOCLINE_KAFKA_PORT": str(self.kafka_port),
            "THERMOCLINE_PG_PORT": str(self.pg_port),
        })
        # Never the shared instances' addresses, whatever the calling shell exported.
        for k in ("THERMOCLINE_KAFKA_BROKERS", "THERMOCLINE_PG_DSN", "PGHOST", "PGPORT",
                  "THERMOCLINE_KAFKA_CONTROLLER_PORT", "THERMOCLINE_LAKE_DIR"):
            self.env.pop(k, None)
        self.brokers = f"127.0.0.1:{self.kafka_port}"
        self.dsn = (f"host=127.0.0.1 port={self.pg_port} dbname=thermocline user=postgres"
                    " connect_timeout=5")

    def dev(self, *args, timeout=600):
        t0 = time.time()
        proc = subprocess.run([DEV, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"dev-services {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return time.time() - t0

    def up(self, svc=None):
        return self.dev("up", *([svc] if svc else []))

    def down(self, svc=None):
        return self.dev("down", *([svc] if svc else []))


class Cluster:
    """The three-broker KRaft cluster of `scripts/dev-services --cluster` (brokers 127.0.0.1:31092
    to 31094 unless TC_CLUSTER_PORT says otherwise), in front of the suite's private PostgreSQL.
    Other scenarios and engineers use it too, one at a time: the holder of /tmp/tc-cluster.lock
    owns it. The brokers are stopped and started one by one (`down --cluster kafka2`)."""

    NODES = 3

    def __init__(self, services):
        self.port = int(os.environ.get("TC_CLUSTER_PORT", "31092"))
        self.env = dict(services.env)
        self.env.pop("THERMOCLINE_STATE_DIR", None)
        self.env["THERMOCLINE_CLUSTER_PORT"] = str(self.port)
        if os.environ.get("TC_CLUSTER_STATE_DIR"):
            self.env["THERMOCLINE_STATE_DIR"] = os.environ["TC_CLUSTER_STATE_DIR"]
        self.brokers = ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.NODES))
        self.dsn = services.dsn

    def dev(self, *args, timeout=600):
        t0 = time.time()
        proc = subprocess.run([DEV, "--cluster", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"dev-services --cluster {' '.join(args)} exited "
                                 f"{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return time.time() - t0

    def up(self, node=None):
        """Start the named node (1..3), or every stopped one."""
        return self.dev("up", *([f"kafka{node}"] if node else []))

    def down(self, node=None):
        return self.dev("down", *([f"kafka{node}"] if node else []))


class Member:
    """One `thermocline run` child process; its stderr (JSON log lines) is collected by a thread,
    so the pipe never fills and the test can wait for a line to appear."""

    def __init__(self, argv, env, name, logfile=None):
        self.name = name
        self.logfile = logfile
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        self.proc.stderr.close()
        with self.cond:
            self.cond.notify_all()
        if self.logfile:
            # Kept for a look after a failure: the end state is checked after the process is gone.
            with open(self.logfile, "w") as f:
                f.write("\n".join(self.lines) + "\n")

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        with self.cond:
            return "\n".join(self.lines)

    def messages(self):
        """The log as (level, component, message) tuples; non-JSON lines (sanitizers) as text."""
        out = []
        with self.cond:
            lines = list(self.lines)
        for line in lines:
            try:
                d = json.loads(line)
                out.append((d.get("level"), d.get("comp"), d.get("msg", "")))
            except ValueError:
                out.append((None, None, line))
        return out

    def wait_for(self, pattern, timeout, start=0):
        """Wait until a log line from index start on matches pattern (a regex); return its index."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    if rx.search(self.lines[i]):
                        return i
                start = len(self.lines)
                left = deadline - time.time()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"{self.name}: no log line matching {pattern!r} within {timeout} s "
                        f"(exit code {self.proc.poll()}); last lines:\n" + "\n".join(self.lines[-40:]))
                self.cond.wait(min(left, 0.5))

    def assigned(self):
        """Partitions currently assigned, as the log tells."""
        parts = set()
        for _lvl, comp, msg in self.messages():
            if comp != "consumer":
                continue
            m = re.match(r"(assigned|revoked|lost) \S+ \[(\d+)\]", msg)
            if m:
                (parts.add if m.group(1) == "assigned" else parts.discard)(int(m.group(2)))
        return parts

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=30)

    def stop(self, timeout=300):
        """SIGTERM: the pipeline writes what it holds, commits the lake and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def finish(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=60)
            self.reader.join(timeout=30)
            raise AssertionError(f"{self.name} did not finish within {timeout} s; last lines:\n"
                                 + "\n".join(self.lines[-60:]))
        self.reader.join(timeout=30)
        return self.proc.returncode

    def assert_clean(self):
        text = self.text()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                       "UndefinedBehaviorSanitizer"):
            assert marker not in text, f"{self.name}: sanitizer finding:\n{text[-8000:]}"


class Simulator:
    """`thermocline simulate` in the background (live timestamps when a rate is given). Its log
    (librdkafka's included) goes to logfile, kept for a look after a failure."""

    def __init__(self, argv, env, logfile):
        self.logfile = logfile
        with open(logfile, "w") as log_out:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_out, text=True,
                                         env=env)
        self.summary = None

    def done(self):
        return self.proc.poll() is not None

    def log(self):
        with open(self.logfile, errors="replace") as f:
            return f.read()

    def wait(self, timeout=900):
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, \
            f"simulate exited {self.proc.returncode}:\n{self.log()[-4000:]}"
        self.summary = json.loads(out.strip().splitlines()[-1])
        with open(self.logfile, "a") as f:
            f.write(f"summary: {json.dumps(self.summary)}\n")  # kept with the log for a look
        return self.summary


# The simulator's librdkafka settings so that every scenario can tell what its idempotent producer
# decided: the "eos" debug lines name every drain, new PID, duplicate and implicit acknowledgement
# per partition (a few dozen lines a broker loss), and log.level lets them through. A partition
# count change (PARTCNT, a broker calling the topic unknown) is logged whatever the debug.
SIM_KAFKA_DEBUG = ("rdkafka.debug=eos", "log.level=debug")


class Pipeline:
    """One isolated pipeline on the private services: topic, group and schema of its own."""

    def __init__(self, services, tag, partitions=6):
        self.services = services
        self.bin = os.environ.get("THERMOCLINE_BIN",
                                  os.path.join(ROOT, "build-asan", "thermocline"))
        self.brokers = services.brokers
        self.dsn = services.dsn
        suffix = uuid.uuid4().hex[:8]
        self.logdir = os.path.join(os.environ.get("TC_FAULTS_LOG_DIR", "/tmp/tc-faults-logs"),
                                   f"{tag}-{suffix}")
        os.makedirs(self.logdir, exist_ok=True)
        self.topic = f"faults-{tag}-{suffix}"
        self.group = f"g-{tag}-{suffix}"
        self.schema = f"f_{tag}_{suffix}".replace("-", "_")
        self.partitions = partitions
        self.members = 0
        self.simulators = 0
        self.sim = None  # the last simulator started

    def settings(self, extra=()):
        args = [
            "--set", f"kafka.brokers={self.brokers}",
            "--set", f"postgres.dsn={self.dsn}",
            "--set", f"kafka.topic={self.topic}",
            "--set", f"kafka.group={self.group}",
            "--set", f"postgres.schema={self.schema}",
            "--set", f"kafka.partitions={self.partitions}",
            "--set", "postgres.timescaledb=off",
            "--set", "log.format=json",
            "--set", "http.listen=127.0.0.1:0",
            "--set", f"rdkafka.session.timeout.ms={SESSION_TIMEOUT_MS}",
        ]
        for kv in extra:
            args += ["--set", kv]
        return args

    def env(self):
        env = dict(self.services.env)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def cmd(self, sub, *args, extra=(), timeout=600):
        argv = [self.bin, sub, *self.settings(extra), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env())
        assert proc.returncode == 0, (f"{' '.join(argv)} exited {proc.returncode}\n"
                                      f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}")
        return proc

    def migrate(self):
        return self.cmd("migrate")

    def simulate(self, count, rate=0, seed=1, devices=1000, invalid=0.01, extra=SIM_KAFKA_DEBUG):
        """`thermocline simulate` in the background, its idempotence decisions logged (see
        SIM_KAFKA_DEBUG), kept as self.sim for assert_exact's look at the topic."""
        self.simulators += 1
        argv = [self.bin, "simulate", *self.settings(extra), "--devices", str(devices), "--count",
                str(count), "--invalid-ratio", str(invalid), "--seed", str(seed)]
        if rate:
            argv += ["--rate", str(rate)]
        self.sim = Simulator(argv, self.env(),
                             os.path.join(self.logdir, f"simulate-{self.simulators}.log"))
        return self.sim

    def spawn(self, extra=(), idle=None):
        self.members += 1
        argv = [self.bin, "run", *self.settings(extra)]
        if idle is not None:
            argv += ["--exit-when-idle", str(idle)]
        return Member(argv, self.env(), f"pipeline #{self.members}",
                      os.path.join(self.logdir, f"run-{self.members}.log"))

    def run(self, extra=(), idle=3, timeout=900):
        m = self.spawn(extra, idle)
        rc = m.finish(timeout)
        m.assert_clean()
        assert rc == 0, f"run exited {rc}:\n" + m.text()[-8000:]
        return m

    def sql(self, query, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def stored(self):
        """Rows in the store now (0 while it is unreachable)."""
        try:
            return self.sql("SELECT count(*) FROM readings")[0][0]
        except psycopg.Error:
            return 0

    def drop(self):
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        except psycopg.Error:
            pass
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": self.brokers})
        for fut in admin.delete_topics([self.topic, f"{self.topic}-dlq"],
                                       operation_timeout=30).values():
            try:
                fut.result()
            except Exception:
                pass


def topic_ends(p):
    c = Consumer({"bootstrap.servers": p.brokers, "group.id": "faults-ends"})
    try:
        md = c.list_topics(p.topic, timeout=30).topics[p.topic]
        return {q: c.get_watermark_offsets(TopicPartition(p.topic, q), timeout=30)[1]
                for q in md.partitions}
    finally:
        c.close()




def assert_delivered(p, sim):
    """The topic holds, partition by partition, exactly what the simulator's delivery reports say
    it delivered there (the simulator is the topic's only producer, so its end offsets are the
    witness). The reports are told apart (src/ingest/kafka.h, tc_producer_tally) so that a
    difference says who vouched for what the topic lacks: the broker (an offset above the topic's
    end: a log cut after it acknowledged), the broker taking two messages for one (an offset not
    above the one before), or librdkafka's own inference (no offset: an idempotent retry's
    duplicate, or a batch taken as written because a later one succeeded)."""
    ends = topic_ends(p)
    parts = sim.summary["partitions"]
    bad = []
    for q in sorted(set(ends) | {int(k) for k in parts}):
        t = parts.get(str(q), {"delivered": 0, "inferred": 0, "repeated": 0, "absent": 0,
                               "end": 0})
        end = ends.get(q, 0)
        if end != t["delivered"] or t["end"] > end or t["repeated"]:
            bad.append(f"partition {q}: the topic ends at offset {end}, the delivery reports "
                       f"say {t['delivered']} delivered: {t['inferred']} inferred by librdkafka "
                       f"without an offset and found in the topic ({t['absent']} more inferred, "
                       f"found absent and sent again), {t['repeated']} at an offset not above "
                       f"the one before, the highest offset {t['end'] - 1}")
    if bad:
        lines = [line for line in sim.log().splitlines()
                 if any(k in line for k in ("IMPLICITACK", "DUPSEQ", "ERRSEQ", "ERRPID", "DRAIN",
                                            "NEWPID", "RESETSEQ", "MSGID", "PARTCNT", "FATAL",
                                            "error"))]
        raise AssertionError(
            "the topic and the simulator's delivery reports disagree:\n  " + "\n  ".join(bad)
            + f"\n(topic {p.topic}; the simulator's idempotence decisions, last 60 of "
            f"{len(lines)}, whole log {sim.logfile}):\n" + "\n".join(lines[-60:]))


def lake_progress(lake, topic):
    out = {}
    for f in glob.glob(os.path.join(lake, "_thermocline", "progress", topic, "*")):
        try:
            with open(f) as fh:
                out[int(os.path.basename(f))] = int(fh.read().strip() or -1)
        except (ValueError, OSError):
            pass
    return out


def wait_caught_up(p, m, lake=None, timeout=300):
    """Wait until the store's offsets, and the lake's committed progress, reach the end of every
    partition (a pipeline running as a daemon; it must stay up all along). Returns the seconds it
    took."""
    t0 = time.time()
    ends = topic_ends(p)
    while True:
        assert m.alive(), f"{m.name} exited:\n{m.text()[-6000:]}"
        try:
            offsets = dict(p.sql("SELECT partition, next_offset FROM ingest_offsets"))
        except psycopg.Error:
            offsets = {}
        progress = lake_progress(lake, p.topic) if lake else None
        if all(offsets.get(q, 0) >= e and (progress is None or progress.get(q, 0) >= e)
               for q, e in ends.items() if e > 0):
            return time.time() - t0
        assert time.time() - t0 < timeout, \
            f"not caught up after {timeout} s: store {offsets}, lake {progress}, ends {ends}"
        time.sleep(0.5)


def group_lag(p, ends):
    c = Consumer({"bootstrap.servers": p.brokers, "group.id": p.group, "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(p.topic, q) for q in ends], timeout=30)
        return {tp.partition: ends[tp.partition] - max(tp.offset, 0) for tp in committed}
    finally:
        c.close()


def wait_lag_zero(p, ends, timeout=30):
    """The last commit to Kafka is asynchronous: give it a moment to land."""
    deadline = time.time() + timeout
    while True:
        lag = group_lag(p, ends)
        if sum(lag.values()) == 0 or time.time() > deadline:
            return lag
        time.sleep(0.5)


def _ranges(offsets):
    out, start, prev = [], None, None
    for o in sorted(offsets):
        if start is None or o != prev + 1:
            if start is not None:
                out.append((start, prev))
            start = o
        prev = o
    if start is not None:
        out.append((start, prev))
    return out


def store_gaps(p, ends):
    """Offsets of the topic that are neither a stored reading nor a dead letter, as ranges per
    partition (what a failed count is explained by)."""
    held = {}
    for q, o in p.sql("SELECT kafka_partition, kafka_offset FROM readings UNION ALL "
                      "SELECT source_partition, source_offset FROM dead_letters"):
        held.setdefault(q, set()).add(o)
    gaps = {}
    for q, end in ends.items():
        missing = set(range(end)) - held.get(q, set())
        if missing:
            gaps[q] = _ranges(missing)[:8]
    return gaps


def assert_exact(p, lake=None, produced=None):
    """The store and the lake hold exactly the valid readings of the topic (count, per-metric
    sums, no duplicates), the dead letters exactly the invalid ones, no partial lake file is
    visible, and the group lag is zero. Returns the oracle's expectation."""
    exp = Oracle(p.brokers, p.topic).expect()
    if produced is not None and exp["total"] != produced and getattr(p, "sim", None) is not None \
            and p.sim.summary is not None:
        assert_delivered(p, p.sim)  # says who vouched for what the topic lacks
    if produced is not None:
        assert exp["total"] == produced, (f"the topic holds {exp['total']} messages, {produced} "
                                          f"produced (ends {exp['ends']}, topic {p.topic})")

    (count, distinct) = p.sql(
        "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM readings")[0]
    assert count == exp["valid"], (f"store: {count} readings, expected {exp['valid']}; missing "
                                   f"offsets {store_gaps(p, exp['ends'])}; logs in {p.logdir}")
    assert distinct == count, f"store: {count - distinct} Kafka messages stored twice"
    for m in METRICS:
        (total, n) = p.sql(f"SELECT coalesce(sum({m}::numeric), 0), count({m}) FROM readings")[0]
        assert n == exp["counts"][m], f"store: {m}: {n} values, expected {exp['counts'][m]}"
        assert Decimal(total) == exp["sums"][m], f"store: sum({m}) = {total}, expected {exp['sums'][m]}"
    rows = p.sql("SELECT source_partition, source_offset, reason FROM dead_letters")
    dead = {(q, o): r for (q, o, r) in rows}
    assert len(rows) == len(dead), f"{len(rows) - len(dead)} dead letters stored twice"
    assert dead == exp["dead"], (f"{len(dead)} dead letters, expected {len(exp['dead'])}; "
                                 f"missing {len(set(exp['dead']) - set(dead))}, "
                                 f"extra {len(set(dead) - set(exp['dead']))}")
    offsets = dict(p.sql("SELECT partition, next_offset FROM ingest_offsets"))
    assert offsets == {q: e for q, e in exp["ends"].items() if e > 0}, offsets

    if lake is not None:
        t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet",
                       partitioning="hive").to_table()
        assert t.num_rows == exp["valid"], f"lake: {t.num_rows} rows, expected {exp['valid']}"
        keys = set(zip(t.column("kafka_partition").to_pylist(), t.column("kafka_offset").to_pylist()))
        assert len(keys) == t.num_rows, f"lake: {t.num_rows - len(keys)} Kafka messages held twice"
        stored = set(p.sql("SELECT kafka_partition, kafka_offset FROM readings"))
        assert keys == stored, "the lake and the store hold different readings"
        for m in METRICS:
            values = [v for v in t.column(m).to_pylist() if v is not None]
            assert len(values) == exp["counts"][m], f"lake: {m}"
            # The shortest round-trip repr of each double is the decimal text the device sent.
            assert sum(Decimal(repr(v)) for v in values) == exp["sums"][m], f"lake: sum({m})"
        files = os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")
        (n,) = duckdb.sql(f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning=true)"
                          ).fetchall()[0]
        assert n == exp["valid"], f"DuckDB reads {n} lake rows"
        hidden = glob.glob(os.path.join(lake, "telemetry", "**", ".*"), recursive=True)
        assert not hidden, f"partial or temporary lake files left: {hidden[:5]}"
        out = p.cmd("lake", "verify", extra=(f"lake.dir={lake}",)).stdout
        assert re.search(r"\b0 bad, 0 temporary", out), out[-2000:]

    lag = wait_lag_zero(p, exp["ends"])
    assert sum(lag.values()) == 0, f"group lag {lag}"
    return exp


def random_delay(rng, lo, hi):
    return lo + (hi - lo) * rng.random()


def make_rng():
    seed = int(os.environ.get("TC_FAULTS_SEED", str(random.SystemRandom().randrange(1 << 30))))
    log(f"random seed {seed} (TC_FAULTS_SEED={seed} replays the same fault moments)")
    return random.Random(seed)
