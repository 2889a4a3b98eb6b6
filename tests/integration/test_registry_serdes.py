"""Confluent's Python serializer and deserializer against the registry, for what used to be
merged by the old identity: decimals of two scales, timestamp logical types, a default-only
evolution, and a reference chain. Every value must come back exactly. Then the pipeline: the event
time of a timestamp-millis writer schema is stored as a time, a reference chain is decoded with the
referenced types resolved, and a decimal (which the pipeline cannot store as a number yet) is a
schema_mismatch dead letter with the reason, logged, never a silently wrong value."""

import datetime
import json
import os
from decimal import Decimal

import pyarrow.dataset as ds
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from test_registry import pg_schema, registry, sr_client  # noqa: F401 (fixtures)

UTC = datetime.timezone.utc


def price_schema(scale):
    return {"type": "record", "name": "Price", "namespace": "io.shop",
            "fields": [{"name": "sku", "type": "string"},
                       {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                                   "precision": 12, "scale": scale}}]}


def round_trip(registry, topic, schema, values, reader=None):
    """Serialize with one client, deserialize with a fresh one (empty caches): what comes back."""
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = AvroSerializer(sr_client(registry), schema if isinstance(schema, Schema) else json.dumps(schema))
    de = AvroDeserializer(sr_client(registry), reader)
    frames = [ser(v, ctx) for v in values]
    return frames, [de(f, ctx) for f in frames]


def frame_id(frame):
    return int.from_bytes(frame[1:5], "big")


def test_decimals_of_two_scales(registry):
    """Scale 2 registered first, then scale 4 under another subject: two ids, exact values."""
    f2, got2 = round_trip(registry, "prices2", price_schema(2),
                          [{"sku": "a", "amount": Decimal("12.34")}])
    f4, got4 = round_trip(registry, "prices4", price_schema(4),
                          [{"sku": "b", "amount": Decimal("12.3456")},
                           {"sku": "c", "amount": Decimal("-0.0001")}])
    assert frame_id(f2[0]) != frame_id(f4[0])
    assert got2 == [{"sku": "a", "amount": Decimal("12.34")}]
    assert got4 == [{"sku": "b", "amount": Decimal("12.3456")},
                    {"sku": "c", "amount": Decimal("-0.0001")}]


def test_timestamp_logical_types(registry):
    plain = {"type": "record", "name": "T", "fields": [{"name": "at", "type": "long"}]}
    millis = {"type": "record", "name": "T",
              "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    micros = {"type": "record", "name": "T",
              "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}
    when = datetime.datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
    fp, gotp = round_trip(registry, "tplain", plain, [{"at": 5}])
    fm, gotm = round_trip(registry, "tmillis", millis, [{"at": when}])
    fu, gotu = round_trip(registry, "tmicros", micros, [{"at": when.replace(microsecond=123456)}])
    assert len({frame_id(fp[0]), frame_id(fm[0]), frame_id(fu[0])}) == 3
    assert gotp == [{"at": 5}]
    assert gotm == [{"at": when}]
    assert gotu == [{"at": when.replace(microsecond=123456)}]


def test_default_only_evolution(registry):
    """A version that only adds a default is a version of its own (FORWARD: it is what lets
    version 3 drop the field); data of every version reads back exactly, and version 3 data read
    with version 2 as the reader takes version 2's default."""
    v1 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"},
                                                    {"name": "c", "type": "int"}]}
    v2 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"},
                                                    {"name": "c", "type": "int", "default": 7}]}
    v3 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"}]}
    client = sr_client(registry)
    client.set_compatibility("evo-value", "FORWARD")
    f1, got1 = round_trip(registry, "evo", v1, [{"a": 1, "c": 2}])
    f2, got2 = round_trip(registry, "evo", v2, [{"a": 3, "c": 4}])
    f3, got3 = round_trip(registry, "evo", v3, [{"a": 5}])
    assert len({frame_id(f1[0]), frame_id(f2[0]), frame_id(f3[0])}) == 3
    assert client.get_versions("evo-value") == [1, 2, 3]
    assert (got1, got2, got3) == ([{"a": 1, "c": 2}], [{"a": 3, "c": 4}], [{"a": 5}])
    # Version 3 data read with version 2 as the reader schema: c takes the default.
    de = AvroDeserializer(sr_client(registry), json.dumps(v2))
    assert de(f3[0], SerializationContext("evo", MessageField.VALUE)) == {"a": 5, "c": 7}


LOCATION = {"type": "record", "name": "Location", "namespace": "io.shared",
            "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}
SITE = {"type": "record", "name": "Site", "namespace": "io.shared",
        "fields": [{"name": "name", "type": "string"}, {"name": "where", "type": "Location"}]}
READING = {"type": "record", "name": "Reading", "namespace": "io.thermocline",
           "fields": [{"name": "device_id", "type": "string"},
                      {"name": "timestamp", "type": {"type": "long",
                                                     "logicalType": "timestamp-millis"}},
                      {"name": "temperature", "type": ["null", "double"], "default": None},
                      {"name": "site", "type": "io.shared.Site"}]}


def register_chain(client):
    client.register_schema("location", Schema(json.dumps(LOCATION), "AVRO"))
    client.register_schema("site", Schema(json.dumps(SITE), "AVRO",
                                          [SchemaReference("io.shared.Location", "location", 1)]))
    return Schema(json.dumps(READING), "AVRO",
                  [SchemaReference("io.shared.Site", "site", 1),
                   SchemaReference("io.shared.Location", "location", 1)])


def test_reference_chain_round_trip(registry):
    reading = register_chain(sr_client(registry))
    when = datetime.datetime(2026, 11, 28, 12, 0, 0, 250000, tzinfo=UTC)
    value = {"device_id": "d-1", "timestamp": when, "temperature": 21.5,
             "site": {"name": "berlin-1", "where": {"lat": 52.52, "lon": 13.405}}}
    frames, got = round_trip(registry, "chain", reading, [value])
    assert got == [value]
    assert sr_client(registry).get_schema(frame_id(frames[0])).references


def test_pipeline_stores_or_dead_letters_exactly(tc, registry, tmp_path):
    """Timestamps and a reference chain are stored exactly, in PostgreSQL and the lake; a decimal
    is refused with its reason."""
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    client = sr_client(registry)
    ctx = SerializationContext(tc.topic, MessageField.VALUE)
    # The chain's subjects are not the topic's; the reading is registered under the topic's.
    reading = register_chain(client)
    ser = AvroSerializer(client, reading)
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    p = Producer({"bootstrap.servers": tc.brokers})
    expect = []
    for i in range(20):
        at = now - datetime.timedelta(seconds=i, milliseconds=125)
        v = {"device_id": f"ref-{i}", "timestamp": at, "temperature": 20 + i / 4,
             "site": {"name": f"site-{i % 3}", "where": {"lat": 52.5 + i / 100, "lon": 13.25}}}
        expect.append(v)
        p.produce(tc.topic, value=ser(v, ctx), key=v["device_id"].encode())
    # A decimal metric-like field: cannot be stored as a number yet.
    dec = {"type": "record", "name": "Priced", "namespace": "io.thermocline",
           "fields": [{"name": "device_id", "type": "string"},
                      {"name": "timestamp", "type": {"type": "long",
                                                     "logicalType": "timestamp-millis"}},
                      {"name": "cost", "type": {"type": "bytes", "logicalType": "decimal",
                                                "precision": 9, "scale": 4}}]}
    dser = AvroSerializer(client, json.dumps(dec))
    other = SerializationContext("priced", MessageField.VALUE)  # its own subject
    dec_frame = dser({"device_id": "dec-1", "timestamp": now, "cost": Decimal("12.3456")}, other)
    p.produce(tc.topic, value=dec_frame, key=b"dec-1")
    assert p.flush(30) == 0

    lake = str(tmp_path / "lake")
    proc = tc.run(idle=2, extra=(f"registry.url={registry.url}", f"lake.dir={lake}"))

    rows = tc.sql("SELECT device_id, time, temperature, extra FROM readings ORDER BY device_id")
    got = {r[0]: r for r in rows}
    assert set(got) == {v["device_id"] for v in expect}
    for v in expect:
        _, at, temp, extra = got[v["device_id"]]
        assert at == v["timestamp"] and temp == v["temperature"]
        assert extra["site"] == v["site"]
    # The lake: the same times (a Parquet timestamp) and the same referenced values.
    t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet", partitioning="hive").to_table()
    lake_rows = {d: (at, temp, json.loads(x)) for d, at, temp, x in zip(
        *(t.column(c).to_pylist() for c in ("device_id", "time", "temperature", "extra")))}
    assert set(lake_rows) == set(got)
    for v in expect:
        at, temp, extra = lake_rows[v["device_id"]]
        assert (at, temp, extra["site"]) == (v["timestamp"], v["temperature"], v["site"])
    # The version catalog read the subject's version with its references resolved too.
    assert tc.sql("SELECT DISTINCT schema_version FROM readings") == [(1,)]
    dead = tc.sql("SELECT reason, detail FROM dead_letters")
    assert len(dead) == 1 and dead[0][0] == "schema_mismatch"
    assert 'field "cost" has logicalType decimal' in dead[0][1]
    assert "logicalType decimal" in proc.stderr and "dead letters" in proc.stderr
    # The time came from the writer's timestamp-millis, not read as a number of something else.
    assert abs((rows[0][1] - now).total_seconds()) < 60
