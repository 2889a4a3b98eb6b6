"""An independent oracle for the pipeline: it reads the topic back with confluent-kafka and decides,
with Python's own JSON parser and the documented rules, which readings must be stored and which
must become dead letters (and why). The tests compare PostgreSQL against it."""

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from confluent_kafka import Consumer, TopicPartition

METRICS = ("temperature", "humidity", "pressure", "battery", "latitude", "longitude")
LIMITS = {
    "temperature": (-50, 100), "humidity": (0, 100), "pressure": (300, 1100),
    "battery": (0, 100), "latitude": (-90, 90), "longitude": (-180, 180),
}
MAX_FUTURE = timedelta(seconds=300)
MAX_AGE = timedelta(days=30)


def _reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


def _parse_time(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return "invalid"
    if t.tzinfo is None:
        return "invalid"
    return t


def classify(value, now):
    """Return (None, reading) for a valid reading, or (reason, None)."""
    if not value:
        return "empty_message", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=Decimal)
    except ValueError:
        return "malformed_json", None
    if not isinstance(doc, dict):
        return "not_an_object", None
    if doc.get("device_id") is None or doc.get("timestamp") is None:
        return "missing_field", None
    if not isinstance(doc["device_id"], str):
        return "wrong_type", None
    for m in METRICS:
        v = doc.get(m)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, Decimal))):
            return "wrong_type", None
    t = _parse_time(float(doc["timestamp"]) if isinstance(doc["timestamp"], Decimal) else doc["timestamp"])
    if t is None:
        return "wrong_type", None
    if t == "invalid":
        return "invalid_timestamp", None
    if t > now + MAX_FUTURE:
        return "timestamp_in_future", None
    if t < now - MAX_AGE:
        return "timestamp_too_old", None
    for m in METRICS:
        v = doc.get(m)
        if v is not None and not (LIMITS[m][0] <= v <= LIMITS[m][1]):
            return "out_of_range", None
    return None, doc


class Oracle:
    def __init__(self, brokers, topic, client_config=None):
        self.brokers = brokers
        self.topic = topic
        self.client_config = client_config or {}  # TLS and SASL settings of a secure broker

    def messages(self, timeout=120):
        """Every message of the topic as (partition, offset, key, value)."""
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": "oracle",
                      "enable.auto.commit": False, "enable.partition.eof": True,
                      **self.client_config})
        try:
            md = c.list_topics(self.topic, timeout=30).topics[self.topic]
            parts = sorted(md.partitions)
            ends = {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1] for p in parts}
            c.assign([TopicPartition(self.topic, p, 0) for p in parts])
            pending = {p for p in parts if ends[p] > 0}
            out = []
            deadline = time.time() + timeout
            while pending and time.time() < deadline:
                for m in c.consume(1000, timeout=1.0):
                    if m.error():
                        continue
                    out.append((m.partition(), m.offset(), m.key(), m.value()))
                    if m.offset() + 1 >= ends[m.partition()]:
                        pending.discard(m.partition())
            assert not pending, f"oracle could not read partitions {pending}"
            return out, ends
        finally:
            c.close()

    def expect(self, now=None):
        """What the store must hold: counts, exact per-metric sums, dead letters by source."""
        now = now or datetime.now(timezone.utc)
        msgs, ends = self.messages()
        valid = 0
        sums = {m: Decimal(0) for m in METRICS}
        counts = {m: 0 for m in METRICS}
        dead = {}
        for partition, offset, _key, value in msgs:
            reason, doc = classify(value, now)
            if reason:
                dead[(partition, offset)] = reason
                continue
            valid += 1
            for m in METRICS:
                if doc.get(m) is not None:
                    sums[m] += Decimal(doc[m])
                    counts[m] += 1
        return {"valid": valid, "sums": sums, "counts": counts, "dead": dead, "ends": ends,
                "total": len(msgs)}
