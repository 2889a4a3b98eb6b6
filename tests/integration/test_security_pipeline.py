"""The pipeline end to end in secure mode (`scripts/dev-services --secure`): TLS + SASL to Kafka with
ACLs, TLS (verify-full) + scram-sha-256 to PostgreSQL, and the refusals a wrong setting meets.

Each test has its own topic, group and schema, and grants its principals exactly what
docs/security.md lists, as the broker's administrator: User:thermocline reads the topic with its
group and writes the -dlq mirror, User:devices writes the topic, nothing else. The pipeline
authenticates with SASL/PLAIN inside TLS: Debian 12's librdkafka (2.0.2) computes SCRAM proofs
that Kafka 4.x refuses (librdkafka#4895); the administrator's client here (confluent-kafka's own,
newer librdkafka) uses SCRAM-SHA-512 on the same listener. Every log and output of these tests is
searched for the passwords at the end.
"""

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import uuid

import psycopg
import pytest

from conftest import Thermocline, tag_of
from oracle import Oracle
from pki import Pki
from test_least_privilege import INGEST_REFUSED
from test_pipeline import assert_store_matches

COUNT = int(os.environ.get("TC_IT_SECURE_COUNT", "20000"))


def _secure_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run through `make test` (or scripts/dev-services --secure up; "
                    "eval \"$(scripts/dev-services --secure env)\")")
    return value


def _password(user):
    with open(os.path.join(_secure_env("THERMOCLINE_SECURE_SECRETS"), f"{user}.password")) as f:
        return f.read().strip()


def admin_config():
    return {"bootstrap.servers": _secure_env("THERMOCLINE_SECURE_KAFKA_BROKERS"),
            "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "admin", "sasl.password": _password("admin"),
            "ssl.ca.location": _secure_env("THERMOCLINE_SECURE_CA_FILE")}


class SecureThermocline(Thermocline):
    """A Thermocline whose every command speaks TLS + SASL to Kafka and TLS to PostgreSQL, as the
    principal given to cmd (thermocline by default); outputs are kept for the secrets' search."""

    def __init__(self, tag):
        super().__init__(tag)
        self.brokers = _secure_env("THERMOCLINE_SECURE_KAFKA_BROKERS")
        self.dsn = _secure_env("THERMOCLINE_SECURE_PG_DSN")  # the owner: migrate, and the tests
        self.ingest_dsn = _secure_env("THERMOCLINE_SECURE_PG_INGEST_DSN")  # the pipeline
        self.ca_file = _secure_env("THERMOCLINE_SECURE_CA_FILE")
        self.secrets = _secure_env("THERMOCLINE_SECURE_SECRETS")
        self.topic = f"sec-{tag}-{uuid.uuid4().hex[:10]}"
        self.group = f"g-{self.topic}"
        self.outputs = []
        self.user = "thermocline"
        self.overrides = []

    def settings(self, extra=()):
        secure = [
            f"kafka.brokers={self.brokers}", "kafka.security_protocol=sasl_ssl",
            "kafka.sasl.mechanism=PLAIN", f"kafka.tls.ca_file={self.ca_file}",
            f"kafka.sasl.username={self.user}",
            f"kafka.sasl.password_file={os.path.join(self.secrets, self.user + '.password')}",
            # Topics are the administrator's: the pipeline may not create them (docs/security.md).
            "kafka.create_topic=false", "kafka.replication_factor=1", "kafka.min_insync_replicas=1",
            f"postgres.owner_dsn={self.dsn}", f"postgres.dsn={self.ingest_dsn}",
        ]
        return super().settings([*secure, *self.overrides, *extra])

    def cmd(self, sub, *args, user="thermocline", extra=(), check=True, **kw):
        self.user = user
        try:
            proc = super().cmd(sub, *args, extra=extra, check=check, **kw)
        finally:
            self.user = "thermocline"
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    def simulate(self, *args):
        import json
        proc = self.cmd("simulate", *args, user="devices")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def oracle(self):
        cfg = admin_config()
        cfg.pop("bootstrap.servers")
        return Oracle(self.brokers, self.topic, cfg)

    def grant(self):
        """The topics and the ACLs of this test's names, as the administrator."""
        from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                           AdminClient, NewTopic, ResourcePatternType,
                                           ResourceType)
        admin = AdminClient(admin_config())
        futs = admin.create_topics([NewTopic(t, self.partitions, 1)
                                    for t in (self.topic, f"{self.topic}-dlq")])
        for f in futs.values():
            f.result(timeout=60)

        def allow(user, rtype, name, op):
            return AclBinding(rtype, name, ResourcePatternType.LITERAL, f"User:{user}", "*", op,
                              AclPermissionType.ALLOW)
        acls = [allow("thermocline", ResourceType.TOPIC, self.topic, AclOperation.READ),
                allow("thermocline", ResourceType.TOPIC, self.topic, AclOperation.DESCRIBE),
                allow("thermocline", ResourceType.GROUP, self.group, AclOperation.READ),
                allow("thermocline", ResourceType.TOPIC, f"{self.topic}-dlq", AclOperation.WRITE),
                allow("thermocline", ResourceType.TOPIC, f"{self.topic}-dlq", AclOperation.DESCRIBE),
                allow("devices", ResourceType.TOPIC, self.topic, AclOperation.WRITE),
                allow("devices", ResourceType.TOPIC, self.topic, AclOperation.DESCRIBE)]
        for f in admin.create_acls(acls).values():
            f.result(timeout=60)
        self.acls = acls

    def admin_config(self):
        return admin_config()

    def drop(self):
        from confluent_kafka.admin import AclBindingFilter, AdminClient
        super().drop()
        filters = [AclBindingFilter(a.restype, a.name, a.resource_pattern_type, a.principal, a.host,
                                    a.operation, a.permission_type)
                   for a in getattr(self, "acls", [])]
        if filters:
            admin = AdminClient(admin_config())
            for f in admin.delete_acls(filters).values():
                f.result(timeout=60)

    def assert_no_secret(self, extra_text=""):
        secrets = [_password(u) for u in ("admin", "thermocline", "devices", "intruder",
                                          "pg-thermocline", "pg-ingest")]
        for text in [*self.outputs, extra_text]:
            for s in secrets:
                assert s not in text, f"a password is in an output:\n{text[-4000:]}"


@pytest.fixture
def stc(request):
    t = SecureThermocline(tag_of(request))
    yield t
    t.drop()


def _dlq_count(stc):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({**admin_config(), "group.id": "oracle-dlq"})
    try:
        md = c.list_topics(f"{stc.topic}-dlq", timeout=30).topics[f"{stc.topic}-dlq"]
        return sum(c.get_watermark_offsets(TopicPartition(f"{stc.topic}-dlq", p), timeout=30)[1]
                   for p in md.partitions)
    finally:
        c.close()


def https_get(port, path, ca_file, timeout=30):
    ctx = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def run_over_https(stc, tmp_path, idle=10):
    """`run --exit-when-idle` with /healthz, /readyz and /metrics over HTTPS (http.tls.*): while
    it runs, they answer over TLS with the test's CA, and plaintext HTTP gets no answer."""
    pki = Pki(tmp_path / "http-pki")
    crt, key = pki.issue("server", "127.0.0.1")
    proc = stc.spawn("run", "--exit-when-idle", str(idle),
                     extra=[f"http.tls.cert_file={crt}", f"http.tls.key_file={key}"])
    seen, port = "", None
    try:
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
            m = re.search(r"/metrics on port (\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, seen[-3000:]
        status, body = https_get(port, "/metrics", pki.ca_file)
        assert status == 200 and "thermocline_" in body
        assert https_get(port, "/healthz", pki.ca_file)[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not sock.recv(4096).startswith(b"HTTP/")
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stc.outputs.append(seen + out + err)
    stc.assert_clean(err)
    assert proc.returncode == 0, (seen + err)[-4000:]


def test_secure_end_to_end_exactly_once(stc, tmp_path):
    """The plaintext end-to-end test's exact assertions, over TLS + SASL with ACLs, TLS + scram to
    PostgreSQL as the ingest role, and HTTPS for /healthz and /metrics; the dead letters reach the
    -dlq mirror too; no password in any output, and `config show` shows where the secrets are,
    never them."""
    stc.grant()
    stc.migrate()
    summary = stc.simulate("--devices", "500", "--count", str(COUNT), "--invalid-ratio", "0.01",
                           "--seed", "42")
    assert summary["produced"] == COUNT and summary["failed"] == 0
    run_over_https(stc, tmp_path)
    exp = stc.oracle().expect()
    assert exp["total"] == COUNT and exp["valid"] == summary["valid"]
    assert_store_matches(stc, exp)
    deadline = time.monotonic() + 120
    while _dlq_count(stc) < len(exp["dead"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _dlq_count(stc) == len(exp["dead"])
    # Every connection to PostgreSQL is TLS, authenticated by scram as a role that is no superuser:
    # the pipeline's as thermocline_ingest, which owns nothing, migrate's as the owner.
    for dsn, user in ((stc.ingest_dsn, "thermocline_ingest"), (stc.dsn, "thermocline")):
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT s.ssl, r.rolsuper, current_user::text FROM pg_stat_ssl s, pg_roles r "
                "WHERE s.pid = pg_backend_pid() AND r.rolname = current_user").fetchone()
        assert row == (True, False, user)
    assert stc.sql("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
                   " WHERE c.relnamespace = current_schema()::regnamespace") == [("thermocline",)]
    # What the ingest role may not do, over TLS + scram as itself (test_least_privilege.py has
    # the whole list): refused with PostgreSQL's reason, nothing changed.
    for query, params, reason in INGEST_REFUSED:
        with psycopg.connect(stc.ingest_dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{stc.schema}"')
            with pytest.raises(psycopg.Error) as e:
                conn.execute(query, params)
        assert e.value.sqlstate.startswith("42") and reason in str(e.value), (query, str(e.value))
    assert stc.sql("SELECT count(*) FROM readings") == [(summary["valid"],)]
    shown = stc.cmd("config", "show", extra=["rdkafka.sasl.password=" + _password("thermocline")])
    assert "rdkafka.sasl.password = <secret>" in shown.stdout
    assert f"kafka.sasl.password_file = {stc.secrets}/thermocline.password" in shown.stdout
    stc.assert_no_secret()


def _refused(stc, *overrides, sub="run", user="thermocline", timeout=120):
    stc.overrides = list(overrides)
    try:
        return stc.cmd(sub, *(["--exit-when-idle", "3"] if sub == "run" else []), user=user,
                       check=False, timeout=timeout)
    finally:
        stc.overrides = []


def test_kafka_refusals_say_what_to_fix(stc, tmp_path):
    """Wrong password, wrong CA, plaintext to the TLS port, a principal without ACLs: each refused,
    with the setting to check named; nothing is stored by them and a correct run afterwards stores
    everything (nothing lost)."""
    stc.grant()
    stc.migrate()
    summary = stc.simulate("--devices", "50", "--count", "500", "--seed", "7")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    os.chmod(wrong, 0o600)
    other_ca = Pki(tmp_path / "other", name="other").ca_file
    cases = [
        (["kafka.create_topic=true", f"kafka.sasl.password_file={wrong}"], "kafka.sasl.password_file"),
        (["kafka.create_topic=true", f"kafka.tls.ca_file={other_ca}"], "kafka.tls.ca_file"),
        (["kafka.create_topic=true", "kafka.security_protocol=plaintext"], "kafka.security_protocol"),
        (["kafka.create_topic=true"], "kafka.create_topic=false"),  # may not create topics
    ]
    for overrides, fix in cases:
        proc = _refused(stc, *overrides)
        assert proc.returncode != 0, (overrides, proc.stderr[-2000:])
        assert fix in proc.stderr, (overrides, proc.stderr[-3000:])
    assert stc.sql("SELECT count(*) FROM readings") == [(0,)]
    # A principal without any ACL: the consumer is refused its group, says so, retries; nothing
    # is read. It is stopped by SIGTERM and exits cleanly.
    stc.user = "intruder"
    proc = stc.spawn("run")
    stc.user = "thermocline"
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while time.monotonic() < deadline and "authorization failed" not in seen.lower():
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "docs/security.md" in seen and "authorization failed" in seen.lower(), seen[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    stc.outputs.append(seen + out + err)
    assert stc.sql("SELECT count(*) FROM readings") == [(0,)]
    # The right settings: every reading, exactly once.
    stc.run(idle=3)
    (stored,) = stc.sql("SELECT count(*) FROM readings")[0]
    (dead,) = stc.sql("SELECT count(*) FROM dead_letters")[0]
    assert stored == summary["valid"] and stored + dead == 500
    stc.assert_no_secret()


def test_postgres_refusals_say_what_to_fix(stc, tmp_path):
    """A wrong password, a CA that did not sign the server's certificate, and no TLS at all: each
    refused by `migrate` with the reason, never with the password."""
    good = stc.dsn
    other_ca = Pki(tmp_path / "other", name="other").ca_file
    wrongpass = tmp_path / "pgpass"
    wrongpass.write_text("*:*:*:*:not-the-password\n")
    os.chmod(wrongpass, 0o600)
    swap = lambda key, value: " ".join(  # noqa: E731
        f"{key}={value}" if kv.startswith(key + "=") else kv for kv in good.split())
    cases = [
        (swap("passfile", wrongpass), "password authentication failed"),
        (swap("sslrootcert", other_ca), "certificate verify failed"),
        (swap("sslmode", "disable"), "no encryption"),
    ]
    # migrate connects as the owner (postgres.owner_dsn), and says which setting to check.
    for dsn, reason in cases:
        proc = stc.cmd("migrate", extra=[f"postgres.owner_dsn={dsn}"], check=False)
        assert proc.returncode != 0
        assert reason in proc.stderr and "postgres.owner_dsn" in proc.stderr, proc.stderr[-2000:]
    with open(os.path.join(stc.secrets, "pgpass")) as f:
        pg_password = f.read().split(":")[-1].strip()
    stc.assert_no_secret()
    for text in stc.outputs:
        assert pg_password not in text
