"""The REST API's audit writer (src/api/rest_audit.c): the records of concurrent requests are
written in shared transactions, every one of them is there with its own caller and the chain is
intact; and a server killed with SIGKILL has a record for every request whose answer a client
received (docs/api.md, "Audit")."""

import concurrent.futures
import http.client
import os
import signal
import threading
import time

import psycopg
import pytest

from rest_api import Api, token

THREADS = 8
PER_THREAD = 30


@pytest.fixture
def api():
    a = Api(extra=["api.rate_per_s=100000", "api.rate_burst=100000", "api.pool_size=8"])
    yield a
    a.close()


def get(api, path, sub):
    """(status, body) of one request with its own connection, or (None, error) when the server
    did not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token('viewer', sub=sub)}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        return None, e
    finally:
        conn.close()


def recorded(api):
    """{subject: count} of the API's requests in the audit log."""
    rows = api.sql(f"SELECT claims->>'sub', count(*) FROM \"{api.audit_schema}\".events"
                   f" WHERE action = 'api.request' GROUP BY 1")
    return dict(rows)


def writer_waits(api):
    """Whether a backend waits for an advisory lock (the chain's, held by the test)."""
    return api.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                   " AND objid = hashtext(%s)::oid", (f'"{api.audit_schema}"',))[0][0] > 0


def test_concurrent_requests_share_transactions(api):
    sent = threading.Semaphore(0)

    def client(t):
        got = []
        for i in range(PER_THREAD):
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=120)
            conn.request("GET", "/v1/devices/dev-0%d/latest" % (i % 9),
                         headers={"Authorization": f"Bearer {token('viewer', sub=f'conc-{t}')}"})
            if i == 0:
                sent.release()
            resp = conn.getresponse()
            resp.read()
            conn.close()
            got.append(resp.status)
        return got

    # The chain's lock held by the test: the writer blocks on its first batch and the records of
    # the other clients' first requests queue behind it, so the next batch has several.
    with psycopg.connect(api.dsn, autocommit=True) as hold:
        hold.execute("SELECT pg_advisory_lock(7311004, hashtext(%s))", (f'"{api.audit_schema}"',))
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            futures = [pool.submit(client, t) for t in range(THREADS)]
            for _ in range(THREADS):
                assert sent.acquire(timeout=60)
            deadline = time.monotonic() + 60
            while not writer_waits(api) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert writer_waits(api)
            hold.execute("SELECT pg_advisory_unlock(7311004, hashtext(%s))", (f'"{api.audit_schema}"',))
            statuses = [s for f in futures for s in f.result()]
    assert statuses == [200] * (THREADS * PER_THREAD)
    # Answered means recorded: no wait needed.
    got = recorded(api)
    assert {k: v for k, v in got.items() if k.startswith("conc-")} == \
        {f"conc-{t}": PER_THREAD for t in range(THREADS)}
    rows, xacts = api.sql(
        f"SELECT count(*), count(DISTINCT xmin::text) FROM \"{api.audit_schema}\".events"
        f" WHERE claims->>'sub' LIKE 'conc-%'")[0]
    # One transaction per request was the old way; concurrent requests now share them.
    assert rows == THREADS * PER_THREAD and xacts < rows, (rows, xacts)
    # Each record as a request's: its status, role, rows and a duration.
    assert api.sql(f"SELECT DISTINCT role, status, row_count, params->>'http_status', actor = session_user,"
                   f" duration_ms > 0 FROM \"{api.audit_schema}\".events WHERE claims->>'sub' LIKE 'conc-%'") \
        == [("thermocline_viewer", "ok", 1, "200", True, True)]
    assert api.t.cmd("audit", "verify").returncode == 0


def test_refused_requests_are_recorded_too(api):
    assert get(api, "/v1/devices?limit=0", "refused-1")[0] == 400
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    conn.request("GET", "/v1/devices")
    assert conn.getresponse().status == 401
    conn.close()
    assert recorded(api).get("refused-1") == 1
    assert api.sql(f"SELECT role, status FROM \"{api.audit_schema}\".events WHERE claims IS NULL"
                   f" AND target = 'GET /v1/devices'") == [("thermocline_authenticator", "refused")]


def test_sigkill_loses_no_answered_request(api):
    answered, stop = [], threading.Event()
    lock = threading.Lock()

    def client(t):
        i = 0
        while not stop.is_set():
            sub = f"kill-{t}-{i}"
            status, _ = get(api, "/v1/devices/dev-01/latest", sub)
            if status is None:
                return
            assert status == 200
            with lock:
                answered.append(sub)
            i += 1

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(client, t) for t in range(THREADS)]
        deadline = time.monotonic() + 120
        while len(answered) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Killed while the clients still send: some requests are queued or being written.
        os.kill(api.proc.pid, signal.SIGKILL)
        api.proc.wait(timeout=30)
        stop.set()
        for f in futures:
            f.result()
    with lock:
        got = set(answered)
    assert len(got) >= 100
    kept = recorded(api)
    missing = [s for s in got if kept.get(s) != 1]
    assert not missing, f"{len(missing)} answered requests have no record: {missing[:5]}"
    assert api.t.cmd("audit", "verify").returncode == 0


def test_no_record_no_data(api):
    """A record that cannot be written: a JSON answer becomes a 500 without the data, and a stream
    is cut before its end (the client can tell it is not whole)."""
    fn = f'"{api.audit_schema}".record_requests(jsonb)'
    api.sql(f"REVOKE EXECUTE ON FUNCTION {fn} FROM thermocline_authenticator")
    try:
        status, body = get(api, "/v1/devices/dev-01/latest", "norecord-1")
        assert status == 500 and b"temperature" not in body and b"audit record" in body, (status, body)
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
        conn.request("GET", "/v1/devices/dev-01/readings?from=2026-11-01T00:00:00Z"
                            "&to=2026-11-02T00:00:00Z&resolution=raw&format=csv",
                      headers={"Authorization": f"Bearer {token('viewer', sub='norecord-2')}"})
        resp = conn.getresponse()
        assert resp.status == 200  # sent before the first row
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        conn.close()
    finally:
        api.sql(f"GRANT EXECUTE ON FUNCTION {fn} TO thermocline_authenticator")
    assert "norecord-1" not in recorded(api)
    # Written again once the function may be called.
    assert get(api, "/v1/devices/dev-01/latest", "norecord-3")[0] == 200
    assert recorded(api).get("norecord-3") == 1
    assert api.t.cmd("audit", "verify").returncode == 0
