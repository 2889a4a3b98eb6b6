"""Versions of the telemetry schema in the pipeline: every row records the registry version it was
read as (the writer's for Avro, the one detected from the fields present for JSON), fields a reading
lacks take the defaults of that version (of the newest one, the reader schema, for Avro), a version
registered while the pipeline runs adds its columns to both stores without a restart, an
incompatible version is refused, and a registry outage pauses consumption without losing or
dead-lettering anything."""

import glob
import json
import os
import time
from decimal import Decimal

import duckdb
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from test_registry import Registry, pg_schema, registry, sr_client  # noqa: F401 (fixtures)
from waits import LogLines, stop_process
from waits import wait_for as _wait_for

V1 = {
    "type": "record", "name": "Reading", "namespace": "io.thermocline",
    "fields": [
        {"name": "device_id", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "temperature", "type": ["null", "double"], "default": None},
        {"name": "humidity", "type": ["null", "double"], "default": None},
        {"name": "battery", "type": ["null", "double"], "default": None},
        {"name": "tags", "type": ["null", {"type": "map", "values": "string"}], "default": None},
    ],
}
# Version 2: two optional fields with non-null defaults (a metric and a string) and one without.
V2 = dict(V1, fields=V1["fields"] + [
    {"name": "rssi", "type": "int", "default": -100},
    {"name": "firmware", "type": "string", "default": "unknown"},
    {"name": "co2", "type": ["null", "double"], "default": None},
])
# Incompatible with version 2 under BACKWARD: temperature becomes a string.
V3_BAD = dict(V2, fields=[dict(f, type=["null", "string"]) if f["name"] == "temperature" else f
                          for f in V2["fields"]])


def wait_for(pred, timeout=90):
    return _wait_for(pred, timeout=timeout)


def subject(tc):
    return f"{tc.topic}-value"


def produce_json(tc, docs):
    p = Producer({"bootstrap.servers": tc.brokers})
    for d in docs:
        p.produce(tc.topic, json.dumps(d).encode(), key=d["device_id"].encode())
    assert p.flush(30) == 0


def lake_rows(lake, columns, tail=""):
    files = glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet"))
    assert files
    return duckdb.sql(f"SELECT {columns} FROM read_parquet({files!r}, union_by_name=true)"
                      f" {tail}").fetchall()


def test_json_version_is_detected_and_defaults_are_applied(tc, registry, tmp_path):  # noqa: F811
    client = sr_client(registry)
    assert client.register_schema(subject(tc), Schema(json.dumps(V1), "AVRO")) > 0
    assert client.register_schema(subject(tc), Schema(json.dumps(V2), "AVRO")) > 0
    tc.migrate()
    tc.simulate("--count", "0")
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    produce_json(tc, [
        # v1's fields only: version 1, nothing added
        {"device_id": "a-v1", "timestamp": ts, "temperature": 20.5, "humidity": 41.0},
        # co2 is only in version 2: version 2, and rssi and firmware take its defaults
        {"device_id": "b-v2-defaults", "timestamp": ts, "temperature": 21.5, "co2": 415.5},
        # every field of version 2 sent: nothing to default
        {"device_id": "c-v2-full", "timestamp": ts, "temperature": 22.5, "rssi": -71,
         "firmware": "3.1", "co2": 420.25},
        # a field no version names: kept in extra, and the version that names most of the rest
        {"device_id": "d-unknown", "timestamp": ts, "temperature": 23.5, "zz_unknown": 7},
    ])
    lake = str(tmp_path / "lake")
    tc.run(idle=2, extra=(f"registry.url={registry.url}", f"lake.dir={lake}"))

    rows = tc.sql("SELECT device_id, schema_version, rssi, co2, extra FROM readings ORDER BY 1")
    got = {r[0]: r[1:] for r in rows}
    assert got["a-v1"] == (1, None, None, None)
    assert got["b-v2-defaults"][:3] == (2, -100.0, 415.5)
    assert got["b-v2-defaults"][3] == {"co2": 415.5, "rssi": -100, "firmware": "unknown"}
    assert got["c-v2-full"] == (2, -71.0, 420.25, {"rssi": -71, "firmware": "3.1", "co2": 420.25})
    assert got["d-unknown"][0] == 1 and got["d-unknown"][3] == {"zz_unknown": 7}
    assert tc.sql("SELECT count(*) FROM dead_letters")[0][0] == 0
    # The lake holds the same versions and defaults.
    lake_got = lake_rows(lake, "device_id, schema_version, rssi", "ORDER BY 1")
    assert lake_got == [("a-v1", 1, None), ("b-v2-defaults", 2, -100.0), ("c-v2-full", 2, -71.0),
                        ("d-unknown", 1, None)]


def test_json_readings_without_a_registry_have_no_version(tc):
    tc.migrate()
    tc.simulate("--devices", "5", "--count", "50", "--seed", "3")
    tc.run(idle=2)
    assert tc.sql("SELECT count(*), count(schema_version) FROM readings")[0] == (50, 0)


def test_version_registered_while_running_evolves_both_stores(tc, registry, tmp_path):  # noqa: F811
    client = sr_client(registry)
    ctx = SerializationContext(tc.topic, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    tc.migrate()
    tc.simulate("--count", "0")
    p = Producer({"bootstrap.servers": tc.brokers})
    now_ms = int(time.time() * 1000)

    def avro_v1(n, tag):
        for i in range(n):
            r = {"device_id": f"{tag}-{i % 10}", "timestamp": now_ms - i, "temperature": 10.0 + i % 50,
                 "humidity": None, "battery": 50.0, "tags": {"k": tag}}
            p.produce(tc.topic, value=v1(r, ctx), key=r["device_id"].encode())
        assert p.flush(30) == 0

    avro_v1(100, "early")
    lake = str(tmp_path / "lake")
    proc = tc.spawn("run", extra=(f"registry.url={registry.url}", "registry.refresh_ms=300",
                                  f"lake.dir={lake}", "lake.roll_seconds=1"))
    log = LogLines(proc.stderr)
    try:
        count = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
        columns = lambda: {r[0] for r in tc.sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'readings'")}
        assert wait_for(lambda: count() == 100)
        assert "rssi" not in columns()
        assert wait_for(lambda: glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet")))

        # Version 2 is registered while the pipeline runs; version-1 messages keep arriving.
        v2_id = client.register_schema(subject(tc), Schema(json.dumps(V2), "AVRO"))
        # A refresh has read version 2: the pipeline knows it now.
        log.wait("schema version 2 becomes a column", timeout=90, proc=proc)
        avro_v1(50, "late")
        assert wait_for(lambda: count() == 150)
        assert {"rssi", "co2"} <= columns()  # before any reading carried them

        v2 = AvroSerializer(client, json.dumps(V2), conf={"auto.register.schemas": False,
                                                          "use.latest.version": True})
        co2_sum = Decimal(0)
        for i in range(60):
            r = {"device_id": f"new-{i % 6}", "timestamp": now_ms - i, "temperature": 30.5,
                 "humidity": 40.0, "battery": None, "tags": None, "rssi": -60 - i,
                 "firmware": "2.0", "co2": 400.5 + i}
            co2_sum += Decimal(repr(r["co2"]))
            p.produce(tc.topic, value=v2(r, ctx), key=r["device_id"].encode())
        assert p.flush(30) == 0
        produce_json(tc, [{"device_id": "json-v1", "timestamp": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "temperature": 1.5}])
        assert wait_for(lambda: count() == 211)

        # An incompatible version 3 is refused, and changes nothing.
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema(subject(tc), Schema(json.dumps(V3_BAD), "AVRO"))
        assert e.value.http_status_code == 409
        assert client.get_versions(subject(tc)) == [1, 2]
    finally:
        stop_process(proc, log)
    err = log.text()
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert "schema version 2 becomes a column" in err

    by_tag = {r[0]: r[1:] for r in tc.sql(
        "SELECT split_part(device_id, '-', 1), count(*), min(schema_version), max(schema_version),"
        " count(rssi), min(rssi), max(rssi), count(co2), sum(co2::numeric)"
        " FROM readings GROUP BY 1")}
    # Version-1 writers stored before version 2 existed: no rssi. After: the reader's default.
    assert by_tag["early"] == (100, 1, 1, 0, None, None, 0, None)
    assert by_tag["late"] == (50, 1, 1, 50, -100.0, -100.0, 0, None)
    assert by_tag["new"][:6] == (60, 2, 2, 60, -119.0, -60.0)
    assert by_tag["new"][6:] == (60, co2_sum)
    assert by_tag["json"] == (1, 1, 1, 0, None, None, 0, None)
    assert tc.sql("SELECT count(*) FROM readings WHERE schema_version = 2")[0][0] == 60
    # The lake: files written before version 2 lack its columns; read together, every row is there.
    lake_got = lake_rows(lake, "count(*), count(rssi), sum(co2), count(schema_version)")
    assert lake_got[0][0] == 211 and lake_got[0][1] == 110 and lake_got[0][3] == 211
    assert Decimal(repr(lake_got[0][2])).quantize(Decimal("0.01")) == co2_sum


def test_registry_outage_pauses_consumption_then_resumes(tc, registry, tmp_path):  # noqa: F811
    client = sr_client(registry)
    ctx = SerializationContext(tc.topic, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    tc.migrate()
    tc.simulate("--count", "0")
    p = Producer({"bootstrap.servers": tc.brokers})
    now_ms = int(time.time() * 1000)
    for i in range(300):
        r = {"device_id": f"dev-{i % 20}", "timestamp": now_ms - i, "temperature": 5.25 + i % 60,
             "humidity": None, "battery": None, "tags": None}
        p.produce(tc.topic, value=v1(r, ctx), key=r["device_id"].encode())
    assert p.flush(30) == 0
    produce_json(tc, [{"device_id": f"json-{i}", "timestamp": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "temperature": 2.5} for i in range(40)])
    registry.stop()

    proc = tc.spawn("run", extra=(f"registry.url={registry.url}", "registry.refresh_ms=300"))
    log = LogLines(proc.stderr)
    try:
        # The pipeline has met the outage: it read a message whose schema it cannot fetch, and
        # retries instead of dead-lettering it.
        log.wait("retrying", timeout=90, proc=proc)
        assert proc.poll() is None, "the pipeline exited while the registry was down"
        # Nothing stored and, above all, nothing dead-lettered while the registry was away.
        assert tc.sql("SELECT count(*) FROM readings")[0][0] == 0
        assert tc.sql("SELECT count(*) FROM dead_letters")[0][0] == 0
        registry.start()  # same port, same tables: same ids
        assert wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] == 340)
    finally:
        stop_process(proc, log)
    err = log.text()
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert "retrying" in err
    assert tc.sql("SELECT count(*) FROM dead_letters")[0][0] == 0
    (n, t_sum, versions) = tc.sql("SELECT count(*), sum(temperature::numeric),"
                                  " array_agg(DISTINCT schema_version) FROM readings")[0]
    assert n == 340 and versions == [1]
    assert Decimal(t_sum) == sum(Decimal(repr(5.25 + i % 60)) for i in range(300)) + Decimal("100")
