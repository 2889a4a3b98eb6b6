"""The schema registry (`thermocline registry`) against the dev PostgreSQL and Kafka.

Each test gets its own PostgreSQL schema for the registry's tables (`--schema`) and its own port, so
tests never see each other's subjects. Clients: confluent-kafka-python's SchemaRegistryClient and
AvroSerializer (producing real messages to Kafka, whose wire format is checked byte by byte), raw
HTTP for the error codes and content types, the `thermocline schema` CLI, and the JavaScript client
@kafkajs/confluent-schema-registry (tests/interop/registry_js).
"""

import concurrent.futures
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import psycopg
import pytest

from conftest import ROOT, Thermocline, _env

BIN = os.environ.get("THERMOCLINE_BIN", os.path.join(ROOT, "build", "thermocline"))
CT = "application/vnd.schemaregistry.v1+json"
JS_DIR = os.path.join(ROOT, "tests", "interop", "registry_js")

V1 = {"type": "record", "name": "Reading", "namespace": "io.thermocline",
      "fields": [{"name": "device_id", "type": "string"},
                 {"name": "temperature", "type": "double"}]}
V2 = {**V1, "fields": V1["fields"] + [{"name": "battery", "type": ["null", "int"], "default": None}]}
# Not BACKWARD compatible with V1/V2: a new field without a default.
BAD = {**V1, "fields": V1["fields"] + [{"name": "pressure", "type": "double"}]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, ct=CT, accept=None):
    """One request; returns (status, content type, parsed JSON body or raw bytes)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None and ct:
        req.add_header("Content-Type", ct)
    if accept is not None:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, rct, raw = r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        with e:
            status, rct, raw = e.code, e.headers.get("Content-Type"), e.read()
    try:
        return status, rct, json.loads(raw)
    except ValueError:
        return status, rct, raw


def schema_body(schema, **extra):
    return json.dumps({"schema": schema if isinstance(schema, str) else json.dumps(schema), **extra})


class Registry:
    """One `thermocline registry` process on a port of its own, tables in pg_schema."""

    def __init__(self, pg_schema, tmp_path, name="registry"):
        self.pg_schema = pg_schema
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{name}-{self.port}.log"
        self.proc = None
        self.log = None
        self.clients = []  # SchemaRegistryClients, closed at stop (they hold sockets)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "registry", "--listen", f"127.0.0.1:{self.port}", "--schema", self.pg_schema,
             "--set", "log.format=json"],
            stdout=subprocess.DEVNULL, stderr=self.log, env=Thermocline.env(self))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"registry exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"registry did not come up:\n{self.stderr()}")

    def stderr(self):
        return self.log_path.read_text(errors="replace")[-8000:]

    def close_clients(self):
        for c in self.clients:
            c.close()
        self.clients = []

    def stop(self):
        self.close_clients()
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        finally:
            self.log.close()
        self.proc = None
        assert rc == 0, f"registry exited {rc}:\n{self.stderr()}"
        Thermocline.assert_clean(self.stderr())

    def kill(self):
        self.close_clients()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            self.proc = None


@pytest.fixture
def pg_schema():
    dsn = _env("THERMOCLINE_PG_DSN")
    name = "reg_" + uuid.uuid4().hex[:12]
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def registry(pg_schema, tmp_path):
    r = Registry(pg_schema, tmp_path).start()
    yield r
    try:
        r.stop()
    finally:
        r.kill()


def sr_client(reg):
    """A fresh client (its caches empty), closed when the registry stops."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    client = SchemaRegistryClient({"url": reg.url, "max.retries": 0})
    reg.clients.append(client)
    return client


def test_confluent_client_round_trip(registry):
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    client = sr_client(registry)
    subject = "readings-value"
    id1 = client.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    assert id1 > 0
    # Same schema, other whitespace: same id, no new version.
    assert client.register_schema(subject, Schema(json.dumps(V1, indent=2), "AVRO")) == id1
    id2 = client.register_schema(subject, Schema(json.dumps(V2), "AVRO"))
    assert id2 != id1

    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id, latest.subject) == (2, id2, subject)
    assert latest.schema.schema_str == json.dumps(V2)
    assert client.get_schema(id1).schema_str == json.dumps(V1)
    found = client.lookup_schema(subject, Schema(json.dumps(V1, separators=(",", ":")), "AVRO"))
    assert (found.version, found.schema_id) == (1, id1)
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1, 2]
    assert client.get_schema_types() == ["AVRO"]
    versions = client.get_schema_versions(id2)
    assert [(v.subject, v.version) for v in versions] == [(subject, 2)]

    # Compatibility: the level is BACKWARD by default.
    assert client.get_compatibility() == "BACKWARD"
    assert client.test_compatibility(subject, Schema(json.dumps(BAD), "AVRO")) is False
    assert client.test_compatibility(subject, Schema(json.dumps(V1), "AVRO")) is True
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema(subject, Schema(json.dumps(BAD), "AVRO"))
    assert (e.value.http_status_code, e.value.error_code) == (409, 409)
    with pytest.raises(SchemaRegistryError) as e:
        client.get_compatibility(subject)
    assert e.value.error_code == 40408
    assert client.set_compatibility(subject, "none") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    id3 = client.register_schema(subject, Schema(json.dumps(BAD), "AVRO"))
    assert client.get_versions(subject) == [1, 2, 3]
    with pytest.raises(SchemaRegistryError) as e:
        client.set_compatibility(subject, "SIDEWAYS")
    assert e.value.error_code == 42203
    assert client.set_compatibility(level="FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility() == "FULL"

    # Deletes: soft first, then permanent.
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_subject(subject, permanent=True)
    assert e.value.error_code == 40405
    assert client.delete_subject(subject) == [1, 2, 3]
    assert subject not in sr_client(registry).get_subjects()
    assert subject in sr_client(registry).get_subjects(deleted=True)
    with pytest.raises(SchemaRegistryError) as e:
        sr_client(registry).get_versions(subject)
    assert e.value.error_code == 40401
    assert sr_client(registry).get_versions(subject, deleted=True) == [1, 2, 3]
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_subject(subject)
    assert e.value.error_code == 40404
    assert client.delete_subject(subject, permanent=True) == [1, 2, 3]
    assert subject not in sr_client(registry).get_subjects(deleted=True)
    # Ids outlive their subjects.
    assert sr_client(registry).get_schema(id3).schema_str == json.dumps(BAD)

    # Versions: soft-delete one, it disappears unless deleted=true; a new registration of the
    # same schema after that gets a new version number.
    s2 = "other-value"
    client.register_schema(s2, Schema(json.dumps(V1), "AVRO"))
    client.register_schema(s2, Schema(json.dumps(V2), "AVRO"))
    assert client.delete_version(s2, 2) == 2
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_version(s2, 2)
    assert e.value.error_code == 40406
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_version(s2, 1, permanent=True)
    assert e.value.error_code == 40407
    assert sr_client(registry).get_versions(s2) == [1]
    assert sr_client(registry).get_version(s2, 2, deleted=True).schema_id == id2
    with pytest.raises(SchemaRegistryError) as e:
        sr_client(registry).get_version(s2, 2)
    assert e.value.error_code == 40402
    assert client.delete_version(s2, 2, permanent=True) == 2
    assert sr_client(registry).get_versions(s2, deleted=True) == [1]
    assert sr_client(registry).register_schema(s2, Schema(json.dumps(V2), "AVRO")) == id2
    assert sr_client(registry).get_versions(s2) == [1, 2]


def test_identity_is_canonical_form(registry):
    """Whitespace, attribute order, the spelling of the namespace and other subjects: one id; the
    first text is kept. (Attributes such as doc make another schema: test_registry_identity.py.)"""
    first = json.dumps(V1)
    variants = [
        json.dumps(V1, indent=4),
        json.dumps({"fields": V1["fields"], "namespace": "io.thermocline", "name": "Reading",
                    "type": "record"}),
        json.dumps({**V1, "name": "io.thermocline.Reading", "namespace": "ignored.here"}),
    ]
    status, _, body = call("POST", registry.url + "/subjects/a-value/versions", schema_body(first))
    assert status == 200
    sid = body["id"]
    for i, text in enumerate(variants):
        status, _, body = call("POST", registry.url + f"/subjects/s{i}/versions", schema_body(text))
        assert (status, body) == (200, {"id": sid})
        status, _, body = call("POST", registry.url + "/subjects/a-value", schema_body(text))
        assert status == 200 and body["version"] == 1 and body["id"] == sid
    status, ct, body = call("GET", registry.url + f"/schemas/ids/{sid}")
    assert (status, ct, body) == (200, CT, {"schema": first})
    status, _, body = call("GET", registry.url + "/subjects/a-value/versions/1/schema")
    assert (status, body) == (200, V1)
    status, _, body = call("GET", registry.url + f"/schemas/ids/{sid}/subjects")
    assert body == ["a-value", "s0", "s1", "s2"]
    status, _, body = call("GET", registry.url + "/subjects/a-value/versions")
    assert body == [1]
    # A different schema is a different id.
    status, _, body = call("POST", registry.url + "/subjects/a-value/versions", schema_body(V2))
    assert status == 200 and body["id"] != sid


def test_avro_serializer_wire_format(registry):
    """AvroSerializer registers through our registry; the bytes on Kafka are Confluent's format."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    import fastavro

    brokers = _env("THERMOCLINE_KAFKA_BROKERS")
    topic = "it-registry-" + uuid.uuid4().hex[:10]
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30).values():
        fut.result()
    try:
        client = sr_client(registry)
        ser = AvroSerializer(client, json.dumps(V2))
        ctx = SerializationContext(topic, MessageField.VALUE)
        readings = [{"device_id": f"sensor-{i:04d}", "temperature": 20.0 + i / 4,
                     "battery": None if i % 3 == 0 else i} for i in range(20)]
        producer = Producer({"bootstrap.servers": brokers})
        sent = []
        for r in readings:
            value = ser(r, ctx)
            sent.append(value)
            producer.produce(topic, key=r["device_id"].encode(), value=value)
        assert producer.flush(30) == 0

        registered = sr_client(registry).get_latest_version(f"{topic}-value")
        assert registered.version == 1
        consumer = Consumer({"bootstrap.servers": brokers, "group.id": "g-" + topic,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(readings) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        consumer.close()
        assert got == sent
        deser = AvroDeserializer(sr_client(registry))
        parsed = fastavro.parse_schema(V2)
        for value, reading in zip(got, readings):
            # Magic byte 0, then the schema id as a big-endian unsigned 32-bit integer.
            assert value[0] == 0
            assert struct.unpack(">I", value[1:5])[0] == registered.schema_id
            assert fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed) == reading
            assert deser(value, ctx) == reading
    finally:
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            try:
                fut.result()
            except Exception:
                pass


def test_raw_http_errors_and_content_types(registry):
    u = registry.url
    assert call("POST", u + "/subjects/r/versions", schema_body(V1))[0] == 200
    cases = [
        # method, path, body, content type, HTTP status, error_code
        ("GET", "/no/such/route", None, None, 404, 404),
        ("GET", "/subjects/r/versions/1/nope", None, None, 404, 404),
        ("PATCH", "/subjects", None, None, 405, 405),
        ("GET", "/subjects/nobody/versions", None, None, 404, 40401),
        ("GET", "/subjects/nobody/versions/latest", None, None, 404, 40401),
        ("GET", "/subjects/r/versions/7", None, None, 404, 40402),
        ("GET", "/schemas/ids/987654", None, None, 404, 40403),
        ("GET", "/schemas/ids/abc", None, None, 404, 404),
        ("POST", "/subjects/r", schema_body(V2), CT, 404, 40403),
        ("POST", "/subjects/nobody", schema_body(V1), CT, 404, 40401),
        ("DELETE", "/subjects/r?permanent=true", None, None, 404, 40405),
        ("DELETE", "/subjects/r/versions/1?permanent=true", None, None, 404, 40407),
        ("GET", "/config/r", None, None, 404, 40408),
        ("DELETE", "/config/r", None, None, 404, 40408),
        ("POST", "/subjects/r/versions", schema_body(BAD), CT, 409, 409),
        ("POST", "/subjects/r/versions", schema_body('{"type": "recrd"}'), CT, 422, 42201),
        ("POST", "/subjects/r/versions", schema_body("not json"), CT, 422, 42201),
        ("POST", "/subjects/r/versions", json.dumps({"schema": 1}), CT, 422, 42201),
        ("POST", "/subjects/r/versions", schema_body(V1, schemaType="PROTOBUF"), CT, 422, 42201),
        ("POST", "/subjects/r/versions",
         schema_body(V1, references=[{"name": "x", "subject": "y", "version": 1}]), CT, 422,
         42201),
        ("POST", "/subjects/r/versions", schema_body(V1, references=[{"name": "x"}]), CT, 422,
         42201),
        ("POST", "/subjects/r/versions", schema_body(V1, metadata=[1]), CT, 422, 42201),
        ("GET", "/subjects/r/versions/0", None, None, 422, 42202),
        ("GET", "/subjects/r/versions/2147483648", None, None, 422, 42202),
        ("GET", "/subjects/r/versions/one", None, None, 422, 42202),
        ("PUT", "/config", json.dumps({"compatibility": "SOMETIMES"}), CT, 422, 42203),
        ("PUT", "/config/r", json.dumps({}), CT, 422, 42203),
        ("POST", "/subjects/r/versions", "{not json", CT, 400, 400),
        ("POST", "/subjects/r/versions", schema_body(V1), "text/plain", 415, 415),
        ("POST", "/subjects/%00/versions", schema_body(V1), CT, 400, 400),
        ("POST", "/subjects/%zz/versions", schema_body(V1), CT, 400, 400),
    ]
    for method, path, body, ct, status, code in cases:
        got_status, got_ct, got = call(method, u + path, body, ct)
        assert (got_status, got_ct) == (status, CT), (method, path, got)
        assert isinstance(got, dict) and got.get("error_code") == code, (method, path, got)
        assert isinstance(got.get("message"), str) and got["message"], (method, path, got)
    # Soft-deleted states.
    assert call("DELETE", u + "/subjects/r/versions/1")[2] == 1
    assert call("DELETE", u + "/subjects/r/versions/1")[2]["error_code"] == 40406
    assert call("DELETE", u + "/subjects/r")[2]["error_code"] == 40404
    # Accepted content types, and none at all.
    for ct in ("application/vnd.schemaregistry+json", "application/json",
               "application/json; charset=utf-8"):
        status, _, body = call("POST", u + "/subjects/ct/versions", schema_body(V1), ct)
        assert status == 200, (ct, body)
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30)
    conn.request("POST", "/subjects/ct/versions", body=schema_body(V2))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == CT
    resp.read()
    conn.close()
    # 413: a body above the cap (2 MiB) is refused before the handler runs.
    big = schema_body('"' + "x" * (3 * 1024 * 1024) + '"')
    status, ct, body = call("POST", u + "/subjects/big/versions", big)
    assert (status, ct, body["error_code"]) == (413, CT, 413)
    # Verbose compatibility messages.
    status, _, body = call("POST", u + "/compatibility/subjects/ct/versions/latest?verbose=true",
                           schema_body(BAD))
    assert status == 200 and body["is_compatible"] is False and body["messages"]
    status, _, body = call("POST", u + "/compatibility/subjects/ct/versions?verbose=true",
                           schema_body('{"type": "nope"}'))
    assert status == 200 and body["is_compatible"] is False and "Invalid schema" in body["messages"][0]
    status, _, body = call("POST", u + "/compatibility/subjects/ct/versions/latest",
                           schema_body(V2))
    assert (status, body) == (200, {"is_compatible": True})
    status, _, body = call("POST", u + "/compatibility/subjects/new-subject/versions/latest",
                           schema_body(V2))
    assert (status, body) == (200, {"is_compatible": True})
    # Config GET with defaultToGlobal, and the other shapes.
    assert call("GET", u + "/config/ct?defaultToGlobal=true")[2] == {"compatibilityLevel": "BACKWARD"}
    assert call("PUT", u + "/config/ct", json.dumps({"compatibility": "FORWARD"}))[2] == {
        "compatibility": "FORWARD"}
    assert call("GET", u + "/config/ct")[2] == {"compatibilityLevel": "FORWARD"}
    assert call("DELETE", u + "/config/ct")[2] == {"compatibilityLevel": "FORWARD"}
    # Subjects with characters that need encoding stay one path segment.
    name = "a/b c?d"
    enc = urllib.parse.quote(name, safe="")
    status, _, body = call("POST", u + f"/subjects/{enc}/versions", schema_body(V1))
    assert status == 200
    status, _, body = call("GET", u + f"/subjects/{enc}/versions/latest")
    assert status == 200 and body["subject"] == name
    assert name in call("GET", u + "/subjects")[2]
    assert call("GET", u + "/subjects?subjectPrefix=a%2F")[2] == [name]


def test_ids_stable_across_restart(pg_schema, tmp_path):
    reg = Registry(pg_schema, tmp_path).start()
    try:
        ids = {}
        for subject, schema in (("x", V1), ("x", V2), ("y", V1), ("z", "\"string\"")):
            status, _, body = call("POST", reg.url + f"/subjects/{subject}/versions",
                                   schema_body(schema))
            assert status == 200
            ids[(subject, schema if isinstance(schema, str) else json.dumps(schema))] = body["id"]
        call("PUT", reg.url + "/config/y", json.dumps({"compatibility": "NONE"}))
        reg.stop()
        reg = Registry(pg_schema, tmp_path, name="restarted").start()
        for (subject, text), sid in ids.items():
            status, _, body = call("POST", reg.url + f"/subjects/{subject}/versions",
                                   schema_body(text))
            assert (status, body) == (200, {"id": sid})
        assert call("GET", reg.url + "/subjects/x/versions")[2] == [1, 2]
        assert call("GET", reg.url + "/config/y")[2] == {"compatibilityLevel": "NONE"}
        status, _, body = call("POST", reg.url + "/subjects/z/versions", schema_body('"bytes"'))
        assert status == 200 and body["id"] > max(ids.values())
    finally:
        try:
            reg.stop()
        finally:
            reg.kill()


def test_two_processes_register_concurrently(pg_schema, tmp_path):
    """Two registries on one database, 50 schemas, each registered by both under a shared subject
    and under each process's own subject, all at once: one id per schema, versions 1..50."""
    regs = [Registry(pg_schema, tmp_path, name=f"p{i}").start() for i in range(2)]
    try:
        for reg in regs:
            # Every schema is a different record: only NONE lets them follow each other.
            for subject in ("shared", "own-0", "own-1"):
                assert call("PUT", reg.url + f"/config/{subject}",
                            json.dumps({"compatibility": "NONE"}))[0] == 200
        schemas = [{"type": "record", "name": f"S{i}", "fields": [{"name": "f", "type": "int"}]}
                   for i in range(50)]
        tasks = [(p, i, subject) for i in range(50) for p in (0, 1)
                 for subject in ("shared", f"own-{p}")]
        random.Random(7).shuffle(tasks)

        def register(task):
            p, i, subject = task
            status, _, body = call("POST", regs[p].url + f"/subjects/{subject}/versions",
                                   schema_body(schemas[i]))
            assert status == 200, body
            return i, body["id"]

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(register, tasks))
        ids = {}
        for i, sid in results:
            ids.setdefault(i, set()).add(sid)
        assert all(len(s) == 1 for s in ids.values()), ids
        per_schema = {i: next(iter(s)) for i, s in ids.items()}
        assert len(set(per_schema.values())) == 50, "two schemas share an id"
        for subject in ("shared", "own-0", "own-1"):
            versions = call("GET", regs[0].url + f"/subjects/{subject}/versions")[2]
            assert versions == list(range(1, 51)), (subject, versions)
            seen = set()
            for v in versions:
                seen.add(call("GET", regs[1].url + f"/subjects/{subject}/versions/{v}")[2]["id"])
            assert seen == set(per_schema.values()), subject
        with psycopg.connect(_env("THERMOCLINE_PG_DSN"), autocommit=True) as conn:
            n_schemas = conn.execute(f'SELECT count(*) FROM "{pg_schema}".schemas').fetchone()[0]
            dup = conn.execute(f'SELECT subject, schema_id, count(*) FROM "{pg_schema}".subject_versions'
                               ' GROUP BY 1, 2 HAVING count(*) > 1').fetchall()
        assert n_schemas == 50 and dup == []
    finally:
        for reg in regs:
            try:
                reg.stop()
            finally:
                reg.kill()


def _backend_pids_of(proc_pid, dsn):
    """PostgreSQL backend pids serving the connections of one local process (by client port)."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    ports = []
    for line in out.splitlines():
        if f"pid={proc_pid}," in line:
            local = line.split()[3]
            ports.append(int(local.rsplit(":", 1)[1]))
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid, client_port FROM pg_stat_activity").fetchall()
    return [pid for pid, port in rows if port in ports]


def test_reconnects_after_connection_loss(registry):
    """The database drops the registry's connection: the next request reconnects and succeeds."""
    dsn = _env("THERMOCLINE_PG_DSN")
    assert call("POST", registry.url + "/subjects/rc/versions", schema_body(V1))[0] == 200
    pids = _backend_pids_of(registry.proc.pid, dsn)
    assert pids, "the registry's backend was not found"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    status, _, body = call("GET", registry.url + "/subjects/rc/versions")
    assert (status, body) == (200, [1])
    status, _, body = call("POST", registry.url + "/subjects/rc/versions", schema_body(V2))
    assert status == 200, body


def test_schema_cli(registry, tmp_path):
    v1 = tmp_path / "v1.avsc"
    v1.write_text(json.dumps(V1, indent=2))
    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(BAD))
    v2 = tmp_path / "v2.avsc"
    v2.write_text(json.dumps(V2))

    def run(*args, env=None, check_rc=0):
        e = Thermocline.env(None)
        e.update(env or {})
        p = subprocess.run([BIN, "schema", *args], capture_output=True, text=True, env=e,
                           timeout=60)
        Thermocline.assert_clean(p.stderr)
        assert p.returncode == check_rc, (args, p.stdout, p.stderr)
        return p

    p = run("--registry", registry.url, "register", "cli-value", str(v1))
    assert p.stdout.startswith("subject cli-value version 1 id ")
    # The URL from the environment.
    p = run("register", "cli-value", str(v2), env={"THERMOCLINE_REGISTRY_URL": registry.url})
    assert p.stdout.startswith("subject cli-value version 2 id ")
    p = run("--registry", registry.url, "ls")
    assert "cli-value" in p.stdout.split()
    p = run("--registry", registry.url, "ls", "cli-value")
    assert p.stdout.split() == ["1", "2"]
    p = run("--registry", registry.url, "show", "cli-value", "1")
    first, rest = p.stdout.split("\n", 1)
    assert first.startswith("subject cli-value version 1 id ")
    assert json.loads(rest) == V1
    p = run("--registry", registry.url, "check", "cli-value", str(v2))
    assert p.stdout.strip() == "compatible"
    p = run("--registry", registry.url, "check", "cli-value", str(bad), check_rc=1)
    assert p.stdout.startswith("incompatible") and "pressure" in p.stdout
    p = run("--registry", registry.url, "register", "cli-value", str(bad), check_rc=1)
    assert "error_code 409" in p.stderr
    p = run("--registry", registry.url, "show", "nobody", check_rc=1)
    assert "error_code 40401" in p.stderr
    p = run("--registry", "http://127.0.0.1:1", "ls", check_rc=1)
    assert "cannot connect" in p.stderr
    run("--registry", "ftp://x", "ls", check_rc=2)
    run("frobnicate", check_rc=2)
    assert run("--help").stdout.startswith("usage: thermocline schema")
    p = subprocess.run([BIN, "registry", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: thermocline registry")


def test_registry_refuses_a_bad_listen_address(pg_schema):
    p = subprocess.run([BIN, "registry", "--listen", "nonsense", "--schema", pg_schema],
                       capture_output=True, text=True, timeout=60, env=Thermocline.env(None))
    assert p.returncode == 2 and "listen address" in p.stderr
    p = subprocess.run([BIN, "registry", "--schema", "Bad-Name", "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60, env=Thermocline.env(None))
    assert p.returncode == 1 and "invalid registry schema name" in p.stderr


def test_javascript_client(registry):
    """@kafkajs/confluent-schema-registry registers, encodes and decodes through our registry."""
    import fastavro

    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the JavaScript client test"
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "@kafkajs")):
        p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"npm install failed:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    p = subprocess.run([node, "registry_client.js", registry.url, "js-readings-value"], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["id1"] > 0 and out["id1_again"] == out["id1"]
    assert out["id2"] not in (out["id1"], None)
    assert out["incompatible_status"] == 409
    assert out["latest_id"] == out["id2"]
    assert out["version1_id"] == out["id1"]
    assert out["by_schema_id"] == out["id1"]
    assert out["schema1_name"] == "io.thermocline.js.Reading"
    assert out["decoded"] == {"device_id": "sensor-0042", "temperature": 21.5, "battery": 87}
    raw = bytes.fromhex(out["encoded_hex"])
    assert raw[0] == 0 and struct.unpack(">I", raw[1:5])[0] == out["id2"]
    # Read the JS client's bytes with Python, using the schema our registry serves for that id.
    status, _, body = call("GET", registry.url + f"/schemas/ids/{out['id2']}")
    writer = fastavro.parse_schema(json.loads(body["schema"]))
    assert fastavro.schemaless_reader(io.BytesIO(raw[5:]), writer) == out["decoded"]
    # The JS client configured the subject's level on first registration.
    assert call("GET", registry.url + "/config/js-readings-value")[2] == {
        "compatibilityLevel": "BACKWARD"}
