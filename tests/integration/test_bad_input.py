"""Bad readings of many kinds: each becomes a dead letter with its specific reason, and the good
readings around them are stored."""

import json
import time

from confluent_kafka import Producer

NOW_MS = int(time.time() * 1000)
TS = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def good(i, **kw):
    doc = {"device_id": f"dev-{i}", "timestamp": TS, "temperature": 20.5, "humidity": 40.0}
    doc.update(kw)
    return json.dumps(doc).encode()


BAD = [
    (b"", "empty_message"),
    (b"{", "malformed_json"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'"', "malformed_json"),
    (b"null", "not_an_object"),
    (b"[1,2]", "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (b'{"timestamp":"' + TS.encode() + b'"}', "missing_field"),
    (b'{"device_id":"d"}', "missing_field"),
    (b'{"device_id":null,"timestamp":"' + TS.encode() + b'"}', "missing_field"),
    (b'{"device_id":42,"timestamp":"' + TS.encode() + b'"}', "wrong_type"),
    (good(1, temperature="hot"), "wrong_type"),
    (good(2, humidity=True), "wrong_type"),
    (good(3, tags=[1, 2]), "wrong_type"),
    (good(4, timestamp=True), "wrong_type"),
    (good(5, device_id=""), "invalid_device_id"),
    (good(6, device_id="x" * 300), "invalid_device_id"),
    (good(7, timestamp="yesterday"), "invalid_timestamp"),
    (good(8, timestamp="2026-02-30T00:00:00Z"), "invalid_timestamp"),
    (good(9, timestamp="2026-11-28T12:00:00"), "invalid_timestamp"),
    (good(10, timestamp="9999-12-31T23:59:59Z"), "timestamp_in_future"),
    (good(11, timestamp=NOW_MS + 3600_000), "timestamp_in_future"),
    (good(12, timestamp="1970-01-01T00:00:00Z"), "timestamp_too_old"),
    (good(13, temperature=100.01), "out_of_range"),
    (good(14, humidity=-0.5), "out_of_range"),
    (good(15, latitude=91), "out_of_range"),
    (good(16, longitude=-180.5), "out_of_range"),
    (good(17, battery=101), "out_of_range"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'","temperature":NaN}', "malformed_json"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'","temperature":Infinity}', "malformed_json"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'","temperature":1e400}', "number_out_of_range"),
    (b'{"device_id":"d","device_id":"e","timestamp":"' + TS.encode() + b'"}', "duplicate_field"),
    (b'{"device_id":"bad\xff","timestamp":"' + TS.encode() + b'"}', "invalid_utf8"),
    (b'{"device_id":"d\\u0000","timestamp":"' + TS.encode() + b'"}', "invalid_utf8"),
    (b'{"device_id":"d\\ud800","timestamp":"' + TS.encode() + b'"}', "invalid_utf8"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'","tags":' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'"} trailing', "malformed_json"),
    (b"\xef\xbb\xbf" + good(18), "malformed_json"),
    (b'{"device_id":"d","timestamp":"' + TS.encode() + b'","pad":"' + b"x" * (200 * 1024) + b'"}', "too_large"),
]

GOOD = [
    good(100),
    good(101, timestamp=NOW_MS - 60_000),
    good(102, timestamp="2026-11-28T12:00:00+05:30".replace("2026-11-28T12:00:00", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 5.5 * 3600 - 60)))),
    good(103, tags={"site": "b\u00e9rlin", "nested": {"a": [1, 2, {"b": None}]}}, firmware="1.2.3", rssi=-71),
    good(104, temperature=None, humidity=None),
    "{\"device_id\":\"caf\\u00e9-\\ud83d\\ude00\",\"timestamp\":\"%s\"}".replace("%s", TS).encode(),
]


def test_each_bad_reading_is_a_dead_letter_with_its_reason(tc):
    tc.migrate()
    errors = []
    p = Producer({"bootstrap.servers": tc.brokers, "message.max.bytes": 1000000})
    tc.cmd("migrate")
    # Create the topic (with one partition, so offsets give the order) by producing to it after
    # thermocline made it: simulate 0 readings creates it with the configured partitions.
    tc.partitions = 1
    tc.simulate("--count", "0")
    for i, (payload, _) in enumerate(BAD):
        p.produce(tc.topic, value=payload if payload else None, key=f"k{i}".encode(),
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.produce(tc.topic, value=GOOD[i % len(GOOD)], key=b"good",
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0 and not errors, errors
    # The size cap is configuration: 64 KiB here, so the 200 KiB reading is refused.
    # The same few good readings go between the bad ones: copies by construction, not a device's
    # resends, so the dedupe window (tests/integration/test_dedupe.py) is off here.
    tc.run(idle=2, extra=("kafka.partitions=1", "pipeline.max_message_bytes=65536",
                          "dedupe.window_s=0"))

    dead = tc.sql("SELECT source_offset, reason, detail, payload, kafka_key FROM dead_letters ORDER BY source_offset")
    assert [r[1] for r in dead] == [reason for _, reason in BAD]
    for (offset, reason, detail, payload, key), (sent, _) in zip(dead, BAD):
        assert offset % 2 == 0
        assert detail, f"{reason} has no detail"
        assert bytes(payload) == sent, f"payload of {reason} not kept byte for byte"
        assert bytes(key) == f"k{offset // 2}".encode()
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == len(BAD)

    # Unknown fields and tags are kept, unicode intact.
    extra, tags = tc.sql("SELECT extra, tags FROM readings WHERE device_id = 'dev-103' LIMIT 1")[0]
    assert extra == {"firmware": "1.2.3", "rssi": -71}
    assert tags == {"site": "b\u00e9rlin", "nested": {"a": [1, 2, {"b": None}]}}
    assert tc.sql("SELECT count(*) FROM readings WHERE device_id = 'caf\u00e9-\U0001F600'")[0][0] > 0
    # Null metrics are NULL, not zero.
    assert tc.sql("SELECT count(*) FROM readings WHERE device_id = 'dev-104' AND temperature IS NULL")[0][0] > 0


def test_dead_letters_are_mirrored_to_the_dlq_topic(tc):
    from confluent_kafka import Consumer, TopicPartition
    tc.migrate()
    tc.partitions = 1
    tc.simulate("--count", "0")
    p = Producer({"bootstrap.servers": tc.brokers})
    sent = BAD[:12]
    for i, (payload, _) in enumerate(sent):
        p.produce(tc.topic, value=payload if payload else None, key=f"k{i}".encode())
        p.produce(tc.topic, value=GOOD[0], key=b"good")
    assert p.flush(30) == 0
    tc.run(idle=2, extra=("kafka.partitions=1", "dedupe.window_s=0"))

    c = Consumer({"bootstrap.servers": tc.brokers, "group.id": "dlq-check",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(f"{tc.topic}-dlq", 0, 0)])
        got = []
        deadline = time.time() + 30
        while len(got) < len(sent) and time.time() < deadline:
            for m in c.consume(100, timeout=1.0):
                if not m.error():
                    got.append(m)
    finally:
        c.close()
    assert len(got) == len(sent)
    for m, (payload, reason) in zip(got, sent):
        headers = {k: v.decode() for k, v in m.headers()}
        assert headers["reason"] == reason
        assert headers["source_topic"] == tc.topic
        assert int(headers["source_offset"]) % 2 == 0
        assert (m.value() or b"") == payload


def test_the_json_log_locates_each_refused_input(tc):
    """A run's JSON log (log.format=json): every line is one object with ts, level, comp and msg;
    a dead letter's line carries topic, partition, offset and device_id as fields of their own --
    the decoded device id when the reading decoded (out of range), the message's key when it did
    not (malformed) -- and the partition's assignment carries topic and partition."""
    tc.partitions = 1
    tc.migrate()
    tc.simulate("--count", "0")
    p = Producer({"bootstrap.servers": tc.brokers})
    sent = [(b"gw-7", good(13, temperature=100.01)),  # offset 0: out_of_range, device dev-13
            (b"good", good(100)),                      # offset 1: stored
            (b"k-\"mal\"", b'{"device_id":')]          # offset 2: malformed, key k-"mal"
    for key, value in sent:
        p.produce(tc.topic, value=value, key=key)
    assert p.flush(30) == 0
    out = tc.run(idle=2, extra=("log.format=json", "dedupe.window_s=0"))

    lines = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert lines and all(list(r)[:4] == ["ts", "level", "comp", "msg"] for r in lines), lines[:3]
    dead = {r["offset"]: r for r in lines if r["msg"].startswith("dead letter: ")}
    assert set(dead) == {0, 2}, [r for r in lines if "dead" in r["msg"]]
    for r in dead.values():
        assert r["topic"] == tc.topic and r["partition"] == 0 and r["comp"] == "pipeline", r
    assert dead[0]["device_id"] == "dev-13" and "out_of_range" in dead[0]["msg"], dead[0]
    assert dead[2]["device_id"] == 'k-"mal"' and "malformed_json" in dead[2]["msg"], dead[2]
    assigned = [r for r in lines if r["msg"].startswith("assigned ")]
    assert assigned and assigned[0]["topic"] == tc.topic and assigned[0]["partition"] == 0, assigned
    # The dead letters are the same inputs the log pointed at.
    assert tc.sql("SELECT source_offset, reason FROM dead_letters ORDER BY 1") == [
        (0, "out_of_range"), (2, "malformed_json")]
