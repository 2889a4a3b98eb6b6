"""SIGHUP reloads the configuration: settings the loop reads anew (validation limits here) apply to
the readings that follow, others are reported as needing a restart, and a configuration that does
not load leaves the running one in place. The pipeline never stops."""

import json
import signal
import time

from confluent_kafka import Producer

from waits import LogLines, stop_process, wait_for


def produce(tc, tag, n, temperature):
    p = Producer({"bootstrap.servers": tc.brokers})
    now_ms = int(time.time() * 1000)
    for i in range(n):
        dev = f"{tag}-{i % 10}"
        p.produce(tc.topic, json.dumps({"device_id": dev, "timestamp": now_ms - i,
                                        "temperature": temperature}).encode(), key=dev.encode())
    assert p.flush(30) == 0


def test_sighup_applies_what_can_change_and_reports_the_rest(tc, tmp_path):
    conf = tmp_path / "thermocline.yaml"
    conf.write_text("validation:\n  temperature_max: 50\npipeline:\n  batch_size: 1000\n")
    tc.migrate()
    tc.simulate("--count", "0")
    proc = tc.spawn("run", "--config", str(conf))
    log = LogLines(proc.stderr)
    try:
        count = lambda q: tc.sql(q)[0][0]
        produce(tc, "before", 100, 55.5)
        wait_for(lambda: count("SELECT count(*) FROM dead_letters") == 100, what="100 dead letters",
                 proc=proc, log=log)
        assert count("SELECT count(*) FROM dead_letters WHERE reason <> 'out_of_range'") == 0

        conf.write_text("validation:\n  temperature_max: 100\npipeline:\n  batch_size: 7\n")
        proc.send_signal(signal.SIGHUP)
        log.wait("configuration reloaded: ", proc=proc)  # applied before the next readings
        produce(tc, "after", 100, 55.5)
        wait_for(lambda: count("SELECT count(*) FROM readings") == 100, what="100 readings",
                 proc=proc, log=log)

        conf.write_text("validation: [this is not a mapping\n")
        proc.send_signal(signal.SIGHUP)
        log.wait("could not reload the configuration", proc=proc)
        produce(tc, "still", 50, 55.5)  # the limits of the last good configuration hold
        wait_for(lambda: count("SELECT count(*) FROM readings") == 150, what="150 readings",
                 proc=proc, log=log)
        assert proc.poll() is None
    finally:
        stop_process(proc, log)
    err = log.text()
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert "reload: validation.temperature_max changed" in err
    assert "reload: pipeline.batch_size changed; it takes effect after a restart" in err
    assert "configuration reloaded: 1 settings applied, 1 need a restart" in err
    assert "could not reload the configuration" in err
    assert count("SELECT count(*) FROM dead_letters") == 100
