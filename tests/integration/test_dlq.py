"""Dead-letter operations: `thermocline dlq ls|count|show|redrive` against what SQL says, a redrive
that stores the readings valid under changed limits exactly once and turns the others into new dead
letters, and the Kafka mirror "<topic>-dlq" through tests/tools/tc_dlq_mirror_send."""

import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient


def populate(tc, count=3000, seed=7):
    """Simulated readings with 5% invalid ones, all consumed by the pipeline."""
    tc.migrate()
    summary = tc.simulate("--devices", "50", "--count", str(count), "--invalid-ratio", "0.05",
                          "--seed", str(seed))
    tc.run()
    return summary


def dlq(tc, *args, extra=(), check=True):
    return tc.cmd("dlq", *args, extra=extra, check=check)


def dlq_json(tc, *args, extra=()):
    return json.loads(dlq(tc, *args, "--json", extra=extra).stdout)


def test_ls_count_show_agree_with_sql(tc):
    summary = populate(tc)
    total = tc.sql("SELECT count(*) FROM dead_letters")[0][0]
    assert total == summary["invalid"] > 0

    # count: per reason, and the total
    by_reason = dict(tc.sql("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
    counted = dlq_json(tc, "count")
    assert {r["reason"]: r["count"] for r in counted["reasons"]} == by_reason
    assert counted["total"] == total
    assert all(r["redriven"] == 0 for r in counted["reasons"])
    text = dlq(tc, "count").stdout
    for reason, n in by_reason.items():
        assert any(line.split() == [reason, str(n), "0"] for line in text.splitlines()), text
    assert text.splitlines()[-1].split() == ["total", str(total)]

    # ls: every row, in id order, with the columns SQL has
    rows = tc.sql("SELECT id, reason, detail, stage, source_topic, source_partition,"
                  " source_offset, octet_length(payload) FROM dead_letters ORDER BY id")
    listed = dlq_json(tc, "ls", "--limit", "0")
    assert [(r["id"], r["reason"], r["detail"], r["stage"], r["source_topic"],
             r["source_partition"], r["source_offset"], r["payload_bytes"]) for r in listed] == \
        [tuple(r) for r in rows]
    assert all(r["redriven_at"] is None and r["redrive_count"] == 0 for r in listed)
    # default limit, paging with --after, filters
    assert len(dlq_json(tc, "ls")) == min(100, total)
    first = dlq_json(tc, "ls", "--limit", "10")
    rest = dlq_json(tc, "ls", "--limit", "0", "--after", str(first[-1]["id"]))
    assert [r["id"] for r in first + rest] == [r[0] for r in rows]
    oor = dlq_json(tc, "ls", "--limit", "0", "--reason", "out_of_range")
    assert [r["id"] for r in oor] == [r[0] for r in rows if r[1] == "out_of_range"]
    assert dlq_json(tc, "ls", "--since", "2999-01-01T00:00:00Z") == []
    assert len(dlq_json(tc, "ls", "--limit", "0", "--since", "1h")) == total
    assert dlq_json(tc, "count", "--since", "2999-01-01T00:00:00Z") == {"reasons": [], "total": 0}
    ls_text = dlq(tc, "ls", "--limit", "5").stdout.splitlines()
    assert ls_text[0].split()[:3] == ["ID", "RECEIVED_AT", "REASON"]
    assert [int(line.split()[0]) for line in ls_text[1:6]] == [r[0] for r in rows[:5]]

    # show: a text payload as text, with reason, detail and coordinates
    dl_id, reason, detail, payload, key, part, off = tc.sql(
        "SELECT id, reason, detail, payload, kafka_key, source_partition, source_offset"
        " FROM dead_letters WHERE reason = 'out_of_range' ORDER BY id LIMIT 1")[0]
    out = dlq(tc, "show", str(dl_id)).stdout
    assert f"reason:       {reason}" in out
    assert detail in out
    assert f"partition {part}, offset {off}" in out
    assert bytes(payload).decode() in out
    assert bytes(key).decode() in out
    shown = dlq_json(tc, "show", str(dl_id))
    assert shown["payload_text"] == bytes(payload).decode()
    assert shown["key_text"] == bytes(key).decode()
    assert shown["id"] == dl_id and shown["reason"] == reason

    # show: a payload that is not UTF-8 as hex
    bad = tc.sql("SELECT id, payload FROM dead_letters WHERE reason = 'invalid_utf8'"
                 " ORDER BY id LIMIT 1")
    if bad:
        out = dlq(tc, "show", str(bad[0][0])).stdout
        assert "not UTF-8, hex" in out
        assert " ".join(f"{b:02x}" for b in bytes(bad[0][1])[:16]) in out
        assert dlq_json(tc, "show", str(bad[0][0]))["payload_hex"] == bytes(bad[0][1]).hex()

    # show: an id that does not exist
    proc = dlq(tc, "show", "999999999", check=False)
    assert proc.returncode == 1 and "no dead letter 999999999" in proc.stderr
    assert dlq(tc, "frobnicate", check=False).returncode == 2


def test_redrive_stores_what_is_valid_now_once(tc):
    summary = populate(tc, count=4000, seed=11)
    hot = summary["invalid_by_kind"]["temperature_too_high"]
    assert hot > 0
    readings = tc.sql("SELECT count(*) FROM readings")[0][0]
    assert readings == summary["valid"]
    oor = tc.sql("SELECT id FROM dead_letters WHERE reason = 'out_of_range' ORDER BY id")
    oor_ids = [r[0] for r in oor]
    # Under the default limits, the too-hot readings are out_of_range dead letters; the others of
    # that reason (humidity below 0, latitude above 90) stay invalid even with a higher limit.
    assert tc.sql("SELECT count(*) FROM dead_letters WHERE reason = 'out_of_range'"
                  " AND detail LIKE 'temperature %'")[0][0] == hot
    still_bad = len(oor_ids) - hot
    assert still_bad > 0
    total_before = tc.sql("SELECT count(*) FROM dead_letters")[0][0]
    max_id_before = tc.sql("SELECT max(id) FROM dead_letters")[0][0]

    # dry run: lists, sends nothing, marks nothing
    out = dlq(tc, "redrive", "--reason", "out_of_range", "--dry-run").stdout
    assert f"would redrive {len(oor_ids)} dead letters" in out
    assert tc.sql("SELECT count(*) FROM dead_letters WHERE redriven_at IS NOT NULL")[0][0] == 0

    # redrive, then again: the second finds nothing left to do
    out = dlq(tc, "redrive", "--reason", "out_of_range").stdout
    assert f"redrove {len(oor_ids)} dead letters" in out
    assert dlq_json(tc, "redrive", "--reason", "out_of_range") == {"redriven": 0,
                                                                   "topic": tc.topic}
    marked = tc.sql("SELECT id, redrive_count FROM dead_letters WHERE redriven_at IS NOT NULL"
                    " ORDER BY id")
    assert marked == [(i, 1) for i in oor_ids]

    # The pipeline, with a temperature limit the too-hot readings meet now.
    offsets_before = dict(tc.sql("SELECT partition, next_offset FROM ingest_offsets"))
    tc.run(extra=("validation.temperature_max=300",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == readings + hot
    assert tc.sql("SELECT count(*) FROM readings WHERE temperature > 100")[0][0] == hot
    new = tc.sql("SELECT reason, source_partition, source_offset FROM dead_letters"
                 " WHERE id > %s", (max_id_before,))
    assert len(new) == still_bad
    assert all(r[0] == "out_of_range" for r in new)
    assert all(r[2] >= offsets_before.get(r[1], 0) for r in new), "new dead letters, new offsets"
    assert tc.sql("SELECT count(*) FROM dead_letters")[0][0] == total_before + still_bad
    # the old rows stay, marked
    assert tc.sql("SELECT count(*) FROM dead_letters WHERE redriven_at IS NOT NULL")[0][0] == \
        len(oor_ids)

    # Running the pipeline again stores nothing twice.
    tc.run(extra=("validation.temperature_max=300",))
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == readings + hot

    # --again re-sends rows already redriven; --id picks one.
    one = oor_ids[0]
    assert dlq_json(tc, "redrive", "--id", str(one)) == {"redriven": 0, "topic": tc.topic}
    assert dlq_json(tc, "redrive", "--id", str(one), "--again") == {"redriven": 1,
                                                                    "topic": tc.topic}
    assert tc.sql("SELECT redrive_count FROM dead_letters WHERE id = %s", (one,))[0][0] == 2
    counted = dlq_json(tc, "count", "--reason", "out_of_range")
    assert counted["reasons"] == [{"reason": "out_of_range", "count": len(oor_ids) + still_bad,
                                   "redriven": len(oor_ids)}]


def tool(name):
    build = os.path.dirname(os.path.abspath(os.environ.get("THERMOCLINE_BIN", "build/thermocline")))
    path = os.path.join(build, "tools", name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build the tests/tools programs")
    return path


def consume_all(brokers, topic, want, timeout=60):
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"check-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.time() + timeout
    try:
        while len(got) < want and time.time() < deadline:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            got.append(m)
        # nothing beyond what was sent
        end = time.time() + 3
        while time.time() < end:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
    finally:
        c.close()
    return got


def test_mirror_topic_carries_payload_key_and_headers(tc):
    n = 9
    try:
        proc = subprocess.run([tool("tc_dlq_mirror_send"), *tc.settings(), "--count", str(n)],
                              capture_output=True, text=True, timeout=120, env=tc.env())
        tc.assert_clean(proc.stderr)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out == {"topic": f"{tc.topic}-dlq", "sent": n}

        msgs = consume_all(tc.brokers, f"{tc.topic}-dlq", n)
        assert len(msgs) == n
        seen = {}
        for m in msgs:
            h = {k: v.decode() for k, v in (m.headers() or [])}
            assert set(h) == {"reason", "detail", "stage", "source_topic", "source_partition",
                              "source_offset", "received_at"}
            i = int(h["source_offset"]) - 1000
            assert i not in seen
            seen[i] = True
            assert h["source_topic"] == tc.topic
            assert h["source_partition"] == str(i % 4)
            assert h["detail"] == f"detail {i}"
            assert h["received_at"] == f"2026-11-28T12:00:{i:02d}.000000Z"
            if i % 3 == 0:
                assert (h["reason"], h["stage"]) == ("out_of_range", "validate")
                assert m.key() == f"dev-{i}".encode()
                assert m.value() == f'{{"device_id":"dev-{i}","temperature":150.{i}}}'.encode()
            elif i % 3 == 1:
                assert (h["reason"], h["stage"]) == ("invalid_utf8", "decode")
                assert m.key() == f"dev-{i}".encode()
                assert m.value() == b"\xff\xfe\x00" + f"bin-{i}".encode()
            else:
                assert (h["reason"], h["stage"]) == ("empty_message", "decode")
                assert m.key() is None
                assert not m.value()
        assert sorted(seen) == list(range(n))
        # the topic was created like the source topic
        md = AdminClient({"bootstrap.servers": tc.brokers}).list_topics(f"{tc.topic}-dlq",
                                                                         timeout=10)
        assert len(md.topics[f"{tc.topic}-dlq"].partitions) == tc.partitions
    finally:
        admin = AdminClient({"bootstrap.servers": tc.brokers})
        for fut in admin.delete_topics([f"{tc.topic}-dlq"], operation_timeout=30).values():
            try:
                fut.result()
            except Exception:
                pass
