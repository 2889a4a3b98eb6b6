"""A device's resends are stored once: an exact copy of an earlier reading, or a reading with the
same device_id, timestamp and message_id, is a `duplicate` dead letter, within a batch, across
batches, and across a restart (the window is rebuilt from the messages before the resume point).
A reading with the same device and time but other content and no message_id is a new reading."""

import glob
import json
import os
import time

import duckdb
from confluent_kafka import Producer


def send(tc, docs):
    p = Producer({"bootstrap.servers": tc.brokers, "linger.ms": 5})
    for d in docs:
        raw = d if isinstance(d, bytes) else json.dumps(d).encode()
        dev = json.loads(raw)["device_id"]
        p.produce(tc.topic, raw, key=dev.encode())
    assert p.flush(30) == 0


def lake_count(lake):
    files = glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet"))
    return duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r}, union_by_name=true)"
                      ).fetchall()[0][0]


def test_resends_are_stored_once_also_across_a_restart(tc, tmp_path):
    tc.migrate()
    tc.simulate("--count", "0")
    base = int(time.time()) * 1000 - 600_000
    originals = [json.dumps({"device_id": f"dev-{i % 40}", "timestamp": base + i * 10,
                             "temperature": 10 + (i % 50) * 0.5}).encode() for i in range(3000)]
    docs = list(originals)
    # Exact copies: right after (same batch), and 1,000 messages later (another batch).
    docs += [originals[i] for i in range(0, 3000, 30)]
    docs.insert(5, originals[4])
    # message_id: same device, time and id with other content is a resend; another id is not.
    docs += [{"device_id": "dev-m", "timestamp": base, "temperature": 1.5, "message_id": "m-1"},
             {"device_id": "dev-m", "timestamp": base, "temperature": 9.5, "message_id": "m-1"},
             {"device_id": "dev-m", "timestamp": base, "temperature": 1.5, "message_id": "m-2"}]
    # Same device and time, other content, no id: a new reading.
    docs += [{"device_id": "dev-0", "timestamp": base, "temperature": 33.25}]
    send(tc, docs)
    lake = str(tmp_path / "lake")
    extra = (f"lake.dir={lake}", "pipeline.batch_size=250")
    tc.run(idle=2, extra=extra)

    dups = 100 + 1 + 1
    unique = len(docs) - dups
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == unique
    assert tc.sql("SELECT count(DISTINCT (device_id, time, temperature)) FROM readings"
                  " WHERE device_id <> 'dev-m'")[0][0] == unique - 2
    dead = tc.sql("SELECT reason, stage, count(*) FROM dead_letters GROUP BY 1, 2")
    assert dead == [("duplicate", "dedupe", dups)]
    # Each dead letter holds the resent message itself, its key, and its own offset (a verdict is
    # settled one message late, from a copy of the message: the copy must be that message's).
    by_offset = {}
    for part, off, payload, key in tc.sql(
            "SELECT source_partition, source_offset, payload, kafka_key FROM dead_letters"):
        by_offset[(part, off)] = (bytes(payload), bytes(key))
    assert len(by_offset) == dups
    for payload, key in by_offset.values():
        assert key == json.loads(payload)["device_id"].encode()
    copies = [bytes(o) for o in originals]
    assert sum(1 for payload, _ in by_offset.values() if payload in copies) == 100 + 1
    assert tc.sql("SELECT count(*) FROM readings r JOIN dead_letters d"
                  " ON (d.source_partition, d.source_offset) = (r.kafka_partition, r.kafka_offset)"
                  )[0][0] == 0
    assert lake_count(lake) == unique
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == unique

    # A new process: resends of readings stored by the first one are still recognised.
    send(tc, [originals[i] for i in range(2900, 3000, 10)] + [originals[2999]])
    tc.run(idle=2, extra=extra)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == unique
    assert tc.sql("SELECT count(*) FROM dead_letters WHERE reason = 'duplicate'")[0][0] == dups + 11
    assert lake_count(lake) == unique


def test_dedupe_off(tc):
    tc.migrate()
    tc.simulate("--count", "0")
    doc = {"device_id": "d", "timestamp": int(time.time()) * 1000, "temperature": 5.5}
    send(tc, [doc, doc, doc])
    tc.run(idle=2, extra=("dedupe.window_s=0",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 3
