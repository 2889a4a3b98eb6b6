"""/healthz, /readyz and /metrics of a running pipeline."""

import json
import signal
import socket
import time
import urllib.error
import urllib.request

from waits import wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(port):
    _, body = get(port, "/metrics")
    return {line.split()[0]: float(line.split()[1])
            for line in body.splitlines() if line and not line.startswith("#")}


def test_health_readiness_and_metrics(tc):
    tc.migrate()
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}",))
    try:
        assert wait_for(lambda: get(port, "/healthz")[0] == 200 if _up(port) else None)
        assert wait_for(lambda: get(port, "/readyz")[0] == 200), get(port, "/readyz")
        assert json.loads(get(port, "/readyz")[1])["partitions"] == tc.partitions
        tc.simulate("--devices", "50", "--count", "3000", "--invalid-ratio", "0.02", "--seed", "21")
        stored = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
        dead = lambda: tc.sql("SELECT count(*) FROM dead_letters")[0][0]
        assert wait_for(lambda: stored() + dead() == 3000)
        m = wait_for(lambda: (lambda m: m if m["thermocline_readings_stored_total"] == stored() else None)(metrics(port)))
        assert m["thermocline_dead_letters_total"] == dead()
        assert m["thermocline_readings_consumed_total"] == 3000
        assert m["thermocline_partitions_assigned"] == tc.partitions
        assert m["thermocline_ready"] == 1
        assert abs(m["thermocline_last_commit_timestamp_seconds"] - time.time()) < 60
        # Every message's delay observed once, every reading in one batch of the histogram.
        assert m["thermocline_end_to_end_delay_seconds_count"] == 3000
        assert m['thermocline_end_to_end_delay_seconds_bucket{le="+Inf"}'] == 3000
        assert 0 < m["thermocline_end_to_end_delay_seconds_sum"] < 3000 * 600
        assert m["thermocline_batch_readings_sum"] == 3000
        assert m["thermocline_batch_readings_count"] == m["thermocline_batches_total"]
        by_reason = {k: v for k, v in m.items() if k.startswith("thermocline_dead_letters_by_reason_total{")}
        assert len(by_reason) > 10 and sum(by_reason.values()) == dead()
        assert m["thermocline_dedupe_hits_total"] == m['thermocline_dead_letters_by_reason_total{reason="duplicate"}']
        lag = wait_for(lambda: (lambda l: l if len(l) == tc.partitions and not any(l.values()) else None)(
            {k: v for k, v in metrics(port).items() if k.startswith("thermocline_consumer_lag_messages{")}))
        assert lag, metrics(port)
        assert m["process_resident_memory_bytes"] > 1e6 and m["process_cpu_seconds_total"] > 0
        assert m['thermocline_build_info{version="0.1.0"}'] == 1
        assert get(port, "/nope")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)


def test_not_ready_while_the_store_is_unreachable(tc):
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}",
                                  "postgres.dsn=host=127.0.0.1 port=1 connect_timeout=1"))
    try:
        assert wait_for(lambda: _up(port))
        assert get(port, "/healthz")[0] == 200
        # "starting" until the first attempt to reach the store has failed (slower under load).
        assert wait_for(lambda: json.loads(get(port, "/readyz")[1]).get("reason") != "starting")
        status, body = get(port, "/readyz")
        assert status == 503, body
        reason = json.loads(body)["reason"]
        assert "store" in reason or "offsets" in reason, reason
        assert metrics(port)["thermocline_ready"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]


def test_a_taken_port_is_a_clear_error(tc):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = tc.cmd("run", "--exit-when-idle", "1", extra=(f"http.listen=127.0.0.1:{port}",), check=False)
    assert p.returncode == 1
    assert str(port) in p.stderr


def _up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_run_without_migrate_fails_fast(tc):
    """A store without its tables is not an outage to wait out: run reports it and exits 1.
    (It used to retry the assignment forever.)"""
    p = tc.cmd("run", "--exit-when-idle", "1", check=False, timeout=120)
    assert p.returncode == 1
    assert "does not exist" in p.stderr
