"""The data-quality monitor's parts that reach outside the process: `quality check-rules` (exit
codes, FILE:LINE:COL messages), the quality tables' DDL on the real PostgreSQL (valid, idempotent,
one row per finding), and `simulate --anomalies --truth` against the real Kafka (what reaches the
topic agrees with the truth file: silent devices send nothing, late readings come after newer
ones, stuck values repeat)."""

import json
import os
import subprocess
import time
from datetime import datetime

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import ROOT
from test_timescale import _timescaledb_usable

BIN = os.environ.get("THERMOCLINE_BIN", os.path.join(ROOT, "build", "thermocline"))
CADENCE_MS = 10000


def tool(name):
    path = os.path.join(os.path.dirname(os.path.abspath(BIN)), "tools", name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build the tests/tools programs")
    return path


def check_rules(path):
    return subprocess.run([BIN, "quality", "check-rules", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_check_rules_valid_and_invalid(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n"
                    "  - name: cold\n"
                    "    scope: {devices: \"fridge-*\"}\n"
                    "    check: {range: {metric: temperature, max: 8}}\n"
                    "    severity: critical\n"
                    "    for: 5m\n"
                    "  - name: dew\n"
                    "    check: {expr: \"dew_point <= temperature\"}\n")
    p = check_rules(good)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"{good}: 2 rules (1 critical, 1 warning; 1 with a `for` duration)"
    assert "metrics: temperature, dew_point" in p.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: dew\n    check: {expr: \"dew_point <= \"}\n")
    p = check_rules(bad)
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr == (f"{bad}:3:33: rule \"dew\": expr: expression ends where a value was "
                        "expected\n")

    typo = tmp_path / "typo.yaml"
    typo.write_text("rules:\n  - name: a\n    check: {required: [t]}\n    severity: critical\n"
                    "    fro: 5m\n")
    p = check_rules(typo)
    assert p.returncode == 1
    assert p.stderr.startswith(f"{typo}:5:5: rule \"a\": unknown key \"fro\" in a rule")

    p = check_rules(tmp_path / "missing.yaml")
    assert p.returncode == 1 and "missing.yaml" in p.stderr
    p = subprocess.run([BIN, "quality"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "" and "usage: thermocline quality" in p.stderr


def test_quality_tables(tc):
    out = subprocess.run([tool("tc_quality_migrate"), tc.dsn, tc.schema], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    tables = {r[0] for r in tc.sql("SELECT table_name FROM information_schema.tables"
                                   " WHERE table_schema = current_schema()")}
    assert {"quality_1m", "quality_fleet_1m", "quality_dead_letters_1m", "anomalies",
            "quality_offsets"} <= tables
    # A finding sent again (after a restart) updates its row; resolving it changes the status.
    upsert = ("INSERT INTO anomalies (device_id, metric, kind, start_time, end_time, score,"
              " observed, expected) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
              " ON CONFLICT (device_id, coalesce(metric, ''), kind, coalesce(rule, ''), start_time)"
              " DO UPDATE SET end_time = EXCLUDED.end_time, score = EXCLUDED.score")
    start = datetime(2026, 11, 28, 12, 0, 0).astimezone()
    end = datetime(2026, 11, 28, 12, 5, 0).astimezone()
    tc.sql(upsert, ("s-1", "temperature", "stuck", start, None, 10, 21.5, 21.4))
    tc.sql(upsert, ("s-1", "temperature", "stuck", start, None, 10, 21.5, 21.4))
    assert tc.sql("SELECT count(*), min(status) FROM anomalies") == [(1, "open")]
    tc.sql(upsert, ("s-1", "temperature", "stuck", start, end, 30, 21.5, 21.4))
    assert tc.sql("SELECT count(*), min(status), max(score) FROM anomalies") == [(1, "resolved", 30)]
    # Silence has no metric; a kind outside the list and an end before the start are refused.
    tc.sql(upsert, ("s-1", None, "silence", start, None, 4, 41, 10))
    assert tc.sql("SELECT count(*) FROM anomalies WHERE status = 'open'") == [(1,)]
    with pytest.raises(psycopg.errors.CheckViolation):
        tc.sql(upsert, ("s-1", None, "gremlins", start, None, 1, 1, 1))
    with pytest.raises(psycopg.errors.CheckViolation):
        tc.sql(upsert, ("s-2", None, "silence", end, start, 1, 1, 1))
    tc.sql("INSERT INTO quality_1m (device_id, bucket, readings, temperature_n, late,"
           " delay_sketch) VALUES ('s-1', %s, 6, 5, 1, ARRAY[0, 2, 4])", (start,))
    assert tc.sql("SELECT readings, temperature_n, humidity_n, delay_sketch FROM quality_1m") == \
        [(6, 5, 0, [0, 2, 4])]
    # Sketches stored from bucket 0 and from their first bucket that counts (subscript b + 1 is
    # bucket b: docs/quality.md) add bucket by bucket; a quantile reads the subscripts.
    assert tc.sql("SELECT tc_quality_sketch_add(ARRAY[1, 0, 2], '[3:5]={5,0,6}')::text,"
                  " tc_quality_sketch_add('[88:89]={1,2}', '[91:91]={3}')::text,"
                  " tc_quality_sketch_add(NULL, '[4:4]={1}')::text") == \
        [("{1,0,7,0,6}", "[88:91]={1,2,0,3}", "[4:4]={1}")]
    # 6 delays, the 3rd smallest (p50) and the 6th (p99) in buckets 88 and 90: 2^((2b - 1) / 8).
    assert tc.sql("SELECT tc_quality_sketch_quantile('[88:91]={1,2,0,3}', 0.5),"
                  " tc_quality_sketch_quantile('[88:91]={1,2,0,3}', 0.99),"
                  " tc_quality_sketch_quantile('{1}', 0.5)") == [(2 ** (175 / 8), 2 ** (179 / 8), 0.5)]
    assert tc.sql("SELECT tc_quality_sketch_sum(s)::text FROM unnest(ARRAY['{0,1}', '[3:3]={2}',"
                  " NULL]::text[]) AS t(x), LATERAL (SELECT x::integer[] AS s) y") == [("{0,1,2}",)]


def test_quality_tables_timescaledb(tc):
    usable, why = _timescaledb_usable()
    if not usable:
        pytest.skip(why)
    out = subprocess.run([tool("tc_quality_migrate"), tc.dsn, tc.schema, "timescaledb"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    assert tc.sql("SELECT count(*) FROM timescaledb_information.hypertables"
                  " WHERE hypertable_schema = %s AND hypertable_name = 'quality_1m'",
                  (tc.schema,)) == [(1,)]


def read_topic(brokers, topic, want, timeout=120):
    """Every message of the topic, per partition in offset order: (key, reading)."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"check-{topic}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = c.list_topics(topic, timeout=30)
    c.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        got.append((m.key().decode(), json.loads(m.value())))
    c.close()
    return got


def test_simulate_anomalies_truth(tc, tmp_path):
    truth = tmp_path / "truth.jsonl"
    devices, steps = 20, 1200
    spec = "spike=0.01,drift=0.02,stuck=0.01,silent=0.01,late=0.01,ooo=0.01"
    summary = tc.simulate("--devices", str(devices), "--count", str(devices * steps),
                          "--seed", "5", "--start", "2026-11-28T00:00:00Z",
                          "--anomalies", spec, "--truth", str(truth))
    lines = [json.loads(l) for l in truth.read_text().splitlines()]
    kinds = {l["kind"] for l in lines}
    assert kinds == {"spike", "drift", "stuck", "silent", "late", "ooo"}, kinds
    for l in lines:
        assert set(l) == {"device", "metric", "kind", "start", "end", "start_us", "end_us"}
        assert l["start_us"] <= l["end_us"]
        assert (l["metric"] is None) == (l["kind"] in ("silent", "late", "ooo"))
    # Silent readings are never sent: produced = count minus the silent episodes' readings.
    silent = sum(round((l["end_us"] - l["start_us"]) / (CADENCE_MS * 1000)) + 1
                 for l in lines if l["kind"] == "silent")
    assert summary["produced"] == devices * steps - silent
    msgs = read_topic(tc.brokers, tc.topic, summary["produced"])
    assert len(msgs) == summary["produced"]
    per_device = {}
    for key, r in msgs:  # keyed by device: one partition each, so this is the device's order
        t = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp() * 1e6
        per_device.setdefault(key, []).append((t, r))
    for l in lines:
        seq = per_device[l["device"]]
        inside = [i for i, (t, _) in enumerate(seq) if l["start_us"] <= t <= l["end_us"]]
        if l["kind"] == "silent":
            assert inside == []
        elif l["kind"] == "late":
            # Each held reading comes after a reading newer than the whole episode.
            first_newer = next(i for i, (t, _) in enumerate(seq) if t > l["end_us"])
            assert inside and min(inside) > first_newer
        elif l["kind"] == "stuck":
            values = {seq[i][1][l["metric"]] for i in inside}
            assert len(inside) >= 20 and len(values) == 1
        elif l["kind"] == "ooo":
            times = [seq[i][0] for i in inside]
            assert times != sorted(times)
