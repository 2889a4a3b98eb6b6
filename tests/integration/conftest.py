"""Fixtures for the integration tests: the real Kafka broker and PostgreSQL cluster started by
scripts/dev-services, and the thermocline binary under test (THERMOCLINE_BIN, the sanitized build
in `make test`). Every test gets its own topic, consumer group and database schema, so tests never
see each other's data."""

import json
import os
import subprocess
import time
import uuid

import psycopg
import pytest

from oracle import Oracle

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run through `make test` (or eval \"$(scripts/dev-services env)\")")
    return value


class Thermocline:
    """One isolated pipeline: topic, group and schema of its own."""

    def __init__(self, tag):
        self.bin = os.environ.get("THERMOCLINE_BIN", os.path.join(ROOT, "build", "thermocline"))
        self.brokers = _env("THERMOCLINE_KAFKA_BROKERS")
        self.dsn = _env("THERMOCLINE_PG_DSN")
        suffix = uuid.uuid4().hex[:10]
        self.topic = f"it-{tag}-{suffix}"
        self.group = f"g-{tag}-{suffix}"
        self.schema = f"t_{tag}_{suffix}".replace("-", "_")
        # The api and the audit log go in schemas of their own too, dropped with the store's.
        self.api_schema = f"{self.schema}_api"
        self.audit_schema = f"{self.schema}_audit"
        self.partitions = 6

    def settings(self, extra=()):
        args = [
            "--set", f"kafka.topic={self.topic}",
            "--set", f"kafka.group={self.group}",
            "--set", f"postgres.schema={self.schema}",
            "--set", f"api.schema={self.api_schema}",
            "--set", f"audit.schema={self.audit_schema}",
            "--set", f"kafka.partitions={self.partitions}",
            "--set", "log.format=json",
            # Plain PostgreSQL unless a test asks for TimescaleDB (which a later --set overrides).
            "--set", "postgres.timescaledb=off",
            # Any free port for /healthz and friends: tests run pipelines side by side.
            "--set", "http.listen=127.0.0.1:0",
        ]
        for kv in extra:
            args += ["--set", kv]
        return args

    def env(self):
        env = dict(os.environ)
        # `scripts/dev-services env` names the dev services' lake (the demo's): a test writes a
        # lake only where it says so (lake.dir), never into that shared one.
        env.pop("THERMOCLINE_LAKE_DIR", None)
        # LeakSanitizer reports leaks inside librdkafka's and OpenSSL's global state at exit that
        # are not ours; ASan's other checks stay on.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        # make test-tsan: a library for the processes under test only (tests/tsan/c11_threads.c).
        if os.environ.get("THERMOCLINE_PRELOAD"):
            env["LD_PRELOAD"] = os.environ["THERMOCLINE_PRELOAD"]
        return env

    def cmd(self, sub, *args, extra=(), check=True, timeout=600, **kw):
        argv = [self.bin, sub, *self.settings(extra), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=self.env(), **kw)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                f"stderr:\n{proc.stderr[-8000:]}")
        self.assert_clean(proc.stderr)
        return proc

    def spawn(self, sub, *args, extra=()):
        argv = [self.bin, sub, *self.settings(extra), *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())

    @staticmethod
    def assert_clean(stderr):
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer", "ThreadSanitizer"):
            assert marker not in stderr, f"sanitizer finding:\n{stderr[-8000:]}"

    def migrate(self):
        return self.cmd("migrate")

    def simulate(self, *args):
        proc = self.cmd("simulate", *args)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def run(self, idle=3, extra=(), timeout=900):
        return self.cmd("run", "--exit-when-idle", str(idle), extra=extra, timeout=timeout)

    def sql(self, query, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def oracle(self):
        return Oracle(self.brokers, self.topic)

    def admin_config(self):
        """librdkafka settings of a client allowed to delete this test's topics."""
        return {"bootstrap.servers": self.brokers}

    def drop(self):
        # A TimescaleDB background job (a policy of this schema's hypertable) may run while the
        # schema goes: the DROP then fails with a deadlock or "tuple concurrently deleted".
        # Unschedule the schema's jobs first, and retry.
        for attempt in range(10):
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
                        conn.execute(
                            "SELECT delete_job(job_id) FROM timescaledb_information.jobs"
                            " WHERE hypertable_schema = %s OR config::text LIKE %s",
                            (self.schema, f'%"{self.schema}"%'))
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}", "{self.api_schema}",'
                                 f' "{self.audit_schema}" CASCADE')
                break
            except psycopg.Error:
                if attempt == 9:
                    raise
                time.sleep(0.5 * (attempt + 1))
        from confluent_kafka.admin import AdminClient
        admin = AdminClient(self.admin_config())
        # The dead-letter mirror creates "<topic>-dlq" on its own: drop it too, or a long-lived dev
        # broker piles up thousands of partitions and takes minutes to start after an unclean stop.
        topics = [self.topic, f"{self.topic}-dlq"]
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            try:
                fut.result()
            except Exception:
                pass


def tag_of(request):
    """A short name of the running test, for its topic, group and schema."""
    return request.node.name.split("[")[0].replace("test_", "")[:12].replace("_", "-")


@pytest.fixture
def tc(request):
    t = Thermocline(tag_of(request))
    yield t
    t.drop()
