"""Avro readings end to end: confluent-kafka's AvroSerializer registers the telemetry schema in
Thermocline's registry and produces Confluent-framed Avro; the pipeline decodes each message with
the writer's schema and stores it value for value, next to JSON readings in the same topic. A
message whose schema id the registry does not know is a dead letter; a version 2 schema with a new
optional metric evolves the store while version 1 messages keep being stored."""

import json
import struct
import time
from decimal import Decimal

from confluent_kafka import Producer
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from test_registry import Registry, pg_schema, registry, sr_client  # noqa: F401 (fixtures)

V1 = {
    "type": "record", "name": "Reading", "namespace": "io.thermocline",
    "fields": [
        {"name": "device_id", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "temperature", "type": ["null", "double"], "default": None},
        {"name": "humidity", "type": ["null", "double"], "default": None},
        {"name": "battery", "type": ["null", "int"], "default": None},
        {"name": "tags", "type": ["null", {"type": "map", "values": "string"}], "default": None},
    ],
}
V2 = dict(V1, fields=V1["fields"] + [{"name": "co2", "type": ["null", "double"], "default": None}])


def test_avro_readings_are_stored_value_for_value(tc, registry):  # noqa: F811
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    client = sr_client(registry)
    ctx = SerializationContext(tc.topic, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(V1))
    v2 = AvroSerializer(client, json.dumps(V2))
    p = Producer({"bootstrap.servers": tc.brokers})
    now_ms = int(time.time() * 1000)
    expect_t = Decimal(0)
    expect_co2 = Decimal(0)
    n_avro = 0
    for i in range(600):
        r = {"device_id": f"avro-{i % 30:02d}", "timestamp": now_ms - i * 1000,
             "temperature": 15 + (i % 40) / 4, "humidity": None if i % 5 == 0 else 40.5,
             "battery": i % 100, "tags": {"site": "lab", "rack": str(i % 3)}}
        if i % 2:
            r["co2"] = 400.25 + i
            expect_co2 += Decimal(repr(r["co2"]))
            value = v2(r, ctx)
        else:
            value = v1(r, ctx)
        expect_t += Decimal(repr(r["temperature"]))
        n_avro += 1
        p.produce(tc.topic, value=value, key=r["device_id"].encode())
    # JSON readings in the same topic, and an Avro frame with an id nobody registered.
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(50):
        p.produce(tc.topic, json.dumps({"device_id": f"json-{i}", "timestamp": ts,
                                        "temperature": 21.5}).encode())
    p.produce(tc.topic, b"\x00" + struct.pack(">i", 987654) + b"\x02x")
    assert p.flush(30) == 0

    tc.run(idle=2, extra=(f"registry.url={registry.url}",))

    (n, t_sum, devices) = tc.sql("SELECT count(*), sum(temperature::numeric), count(DISTINCT device_id)"
                                 " FROM readings WHERE device_id LIKE 'avro-%'")[0]
    assert n == n_avro and Decimal(t_sum) == expect_t and devices == 30
    assert tc.sql("SELECT count(*) FROM readings WHERE device_id LIKE 'json-%'")[0][0] == 50
    assert tc.sql("SELECT count(*) FROM readings WHERE device_id LIKE 'avro-%' AND humidity IS NULL")[0][0] == 120
    assert tc.sql("SELECT tags FROM readings WHERE device_id = 'avro-01' LIMIT 1")[0][0]["site"] == "lab"
    # Timestamps in millis from the writer schema became the event time.
    (skew,) = tc.sql("SELECT max(abs(extract(epoch FROM now() - time))) FROM readings"
                     " WHERE device_id LIKE 'avro-%'")[0]
    assert skew < 3600
    # Version 2's new optional metric became a column; version 1 rows have NULL there.
    (n_co2, co2_sum) = tc.sql("SELECT count(co2), sum(co2::numeric) FROM readings")[0]
    assert n_co2 == 300 and Decimal(co2_sum) == expect_co2
    dead = tc.sql("SELECT reason, detail FROM dead_letters")
    assert [r[0] for r in dead] == ["unknown_schema"] and "987654" in dead[0][1]


def test_avro_without_a_registry_is_a_dead_letter(tc):
    tc.migrate()
    tc.simulate("--count", "0")
    p = Producer({"bootstrap.servers": tc.brokers})
    p.produce(tc.topic, b"\x00" + struct.pack(">i", 1) + b"\x02x")
    assert p.flush(30) == 0
    tc.run(idle=2)
    assert [r[0] for r in tc.sql("SELECT reason FROM dead_letters")] == ["unknown_schema"]
