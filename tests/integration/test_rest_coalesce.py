"""Identical reads share one computation (src/api/coalesce.c; docs/api.md, "Identical reads"):
concurrent identical requests get the bytes an uncoalesced request gets from fewer statements,
callers with other claims never share, a request never gets rows older than its arrival, each
request keeps its own audit record, and an answer past the cap is not shared. The latest reading
of every device is also kept and given again while latest_state is unchanged ("Kept answers"):
the coalescing tests read the devices (/v1/devices, not kept), the kept-answer tests /v1/latest.

Every step is pinned by a lock the test holds, never by timing: the table the view reads locked
(a request's statement waits in PostgreSQL, so its computation runs for as long as the test
wants), or the audit chain's lock (a request has read its rows and waits for its record); and the
server's /metrics says how many requests wait in the table before the test lets go."""

import concurrent.futures
import contextlib
import http.client
import json
import time

import psycopg
import pytest

from rest_api import Api, token

PATH = "/v1/devices?format=ndjson"
LATEST = "/v1/latest?format=ndjson"
DEVICES = 25
# Sites of the seeded devices: dev-NN is on s(NN % 3).
SITE_DEVICES = {s: sum(1 for d in range(DEVICES) if d % 3 == s) for s in range(3)}


def start(*extra):
    # Threads (api.pool_size) for every request the tests hold at once.
    return Api(extra=["api.rate_per_s=100000", "api.rate_burst=100000", "api.pool_size=16", *extra])


@pytest.fixture(scope="module")
def api():
    a = start()
    yield a
    a.close()


def get(api, path, tok):
    """(status, body) of one request on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=120)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {tok}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metrics(api):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        text = resp.read().decode()
    finally:
        conn.close()
    return {k: int(v) for k, v in (line.split() for line in text.splitlines()
                                    if line and not line.startswith("#"))}


def delta(before, after):
    return {k: after[k] - before[k] for k in after}


def wait_until(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"not reached in {timeout} s: {what}")


def waiting(api):
    return metrics(api)["thermocline_api_coalesce_waiting"]


def blocked(api):
    """Backends waiting for the test's lock on latest_state."""
    return api.sql("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                   (f'"{api.t.schema}".latest_state',))[0][0]


@contextlib.contextmanager
def table_locked(api):
    """latest_state locked: a request reading it waits in PostgreSQL until the block ends."""
    with psycopg.connect(api.dsn) as conn:
        conn.execute(f'LOCK TABLE "{api.t.schema}".latest_state IN ACCESS EXCLUSIVE MODE')
        yield
        conn.rollback()


def rows(body):
    return [json.loads(line) for line in body.splitlines()]


def send(pool, api, path, tok, n, cond):
    """n requests, each sent once the one before it is where cond says (a server thread takes
    the connections that arrive together, and answers them one after the other)."""
    futures = []
    for i in range(n):
        futures.append(pool.submit(get, api, path, tok))
        wait_until(f"request {i + 1} of {n} in place", lambda: cond(i + 1))
    return futures


def run_held(api, path, tok, n):
    """One request whose statement is held in PostgreSQL, then n identical ones that arrive while
    it runs: the answers, first one's first."""
    with concurrent.futures.ThreadPoolExecutor(n + 1) as pool:
        with table_locked(api):
            futures = send(pool, api, path, tok, 1, lambda k: blocked(api) == k)
            futures += send(pool, api, path, tok, n, lambda k: waiting(api) == k)
        return [f.result() for f in futures]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_identical_reads_share_one_statement(api, fmt):
    path, sub, n = f"/v1/devices?format={fmt}", f"coalesce-{fmt}", 10
    tok = token("viewer", sub=sub)
    before = metrics(api)
    status, ref = get(api, path, tok)  # alone: the path every request took before
    assert status == 200
    assert delta(before, metrics(api))["thermocline_api_coalesced_total"] == 0
    count = len(rows(ref)) if fmt == "ndjson" else len(json.loads(ref)["data"])
    assert count == DEVICES

    before = metrics(api)
    got = run_held(api, path, tok, n)
    d = delta(before, metrics(api))
    assert got == [(200, ref)] * (n + 1)
    # The held one, then one for the n that arrived while it ran: n - 1 of them answered by it.
    assert d["thermocline_api_statements_total"] == 2 < n + 1
    assert d["thermocline_api_coalesced_total"] == n - 1
    assert d["thermocline_api_coalesce_fallbacks_total"] == 0
    assert metrics(api)["thermocline_api_coalesce_held_bytes"] == 0
    # Every request recorded as itself: n + 2 records, each with the rows it was sent.
    assert api.sql(f"SELECT count(*), min(row_count), max(row_count), min(status),"
                   f" max(status), min(params->>'http_status'), bool_and(duration_ms > 0)"
                   f" FROM \"{api.audit_schema}\".events WHERE claims->>'sub' = %s", (sub,)) \
        == [(n + 2, DEVICES, DEVICES, "ok", "ok", "200", True)]
    assert api.t.cmd("audit", "verify").returncode == 0


def test_other_claims_never_share(api):
    # The same subject and role, another site: only the claims tell them apart.
    tok = {s: token("viewer", sub="coalesce-sites", sites=[f"s{s}"]) for s in (0, 1)}
    before = metrics(api)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        with table_locked(api):
            # s0: one held in PostgreSQL, two waiting in the table for the next computation.
            futures = {0: send(pool, api, PATH, tok[0], 1, lambda k: blocked(api) == k)}
            futures[0] += send(pool, api, PATH, tok[0], 2, lambda k: waiting(api) == k)
            # s1 asks the same path meanwhile: a key of its own, so it runs at once (and waits
            # for the lock too) instead of joining s0's next computation.
            futures[1] = send(pool, api, PATH, tok[1], 1, lambda k: blocked(api) == 1 + k)
            futures[1] += send(pool, api, PATH, tok[1], 2, lambda k: waiting(api) == 2 + k)
        got = {s: [f.result() for f in fs] for s, fs in futures.items()}
    for s in (0, 1):
        for status, body in got[s]:
            assert status == 200
            sites = [r["site"] for r in rows(body)]
            assert sites == [f"s{s}"] * SITE_DEVICES[s]
    assert delta(before, metrics(api))["thermocline_api_coalesced_total"] == 2


def test_a_request_sees_rows_committed_before_it_arrived(api):
    path, tok = "/v1/devices/dev-03/latest", token("viewer", sub="coalesce-fresh")
    lock = (7311004, f'"{api.audit_schema}"')
    old = get(api, path, tok)
    assert old[0] == 200 and json.loads(old[1])["temperature"] != 99.25
    before = metrics(api)
    with concurrent.futures.ThreadPoolExecutor(3) as pool, \
            psycopg.connect(api.dsn, autocommit=True) as hold:
        # The audit chain's lock: the first request reads its row, then waits for its record,
        # its computation still running.
        hold.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", lock)
        first = pool.submit(get, api, path, tok)
        wait_until("the first request's record waits for the chain", lambda: api.sql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid = hashtext(%s)::oid", (lock[1],))[0][0] > 0)
        api.sql(f'UPDATE "{api.t.schema}".latest_state SET temperature = 99.25'
                f" WHERE device_id = 'dev-03'")
        # Committed before these two arrive: they must not get the running computation's row.
        later = send(pool, api, path, tok, 2, lambda k: waiting(api) == k)
        hold.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", lock)
        got = [f.result() for f in [first, *later]]
    assert got[0] == old
    for status, body in got[1:]:
        assert status == 200 and json.loads(body)["temperature"] == 99.25
    assert got[1] == got[2]
    assert delta(before, metrics(api))["thermocline_api_coalesced_total"] == 1


def test_an_answer_past_the_cap_is_not_shared():
    a = start("api.coalesce_answer_max=1024")
    try:
        tok = token("viewer", sub="coalesce-cap")
        status, ref = get(a, PATH, tok)
        assert status == 200 and len(ref) > 1024
        before = metrics(a)
        got = run_held(a, PATH, tok, 4)
        d = delta(before, metrics(a))
        assert got == [(200, ref)] * 5
        # The next computation's leader streamed its own answer; its three followers ran theirs.
        assert d["thermocline_api_statements_total"] == 5
        assert d["thermocline_api_coalesce_fallbacks_total"] == 3
        assert d["thermocline_api_coalesced_total"] == 0
        assert metrics(a)["thermocline_api_coalesce_held_bytes"] == 0
    finally:
        a.close()


def test_off_runs_every_request():
    a = start("api.coalesce=false")
    try:
        tok = token("viewer", sub="coalesce-off")
        status, ref = get(a, PATH, tok)
        assert status == 200
        before = metrics(a)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with table_locked(a):
                # Nobody waits in the table: every request reaches PostgreSQL.
                futures = send(pool, a, PATH, tok, 4, lambda k: blocked(a) == k)
                assert waiting(a) == 0
            got = [f.result() for f in futures]
        assert got == [(200, ref)] * 4
        assert delta(before, metrics(a))["thermocline_api_statements_total"] == 4
    finally:
        a.close()


def test_an_unchanged_table_answers_from_the_kept_answer(api):
    sub = "kept-same"
    tok = token("viewer", sub=sub)
    status, ref = get(api, LATEST, tok)
    assert status == 200 and len(rows(ref)) == DEVICES
    before = metrics(api)
    got = [get(api, LATEST, tok) for _ in range(3)]
    d = delta(before, metrics(api))
    assert got == [(200, ref)] * 3
    # Nothing changed latest_state: no statement, three reuses of the kept bytes.
    assert d["thermocline_api_statements_total"] == 0
    assert d["thermocline_api_answers_reused_total"] == 3
    assert metrics(api)["thermocline_api_answers_kept"] >= 1
    # Each request still recorded as itself, with the rows it was sent.
    assert api.sql(f"SELECT count(*), min(row_count), max(row_count)"
                   f" FROM \"{api.audit_schema}\".events WHERE claims->>'sub' = %s", (sub,)) \
        == [(4, DEVICES, DEVICES)]
    # Another caller's claims are another key: its own computation, its own rows.
    other = token("viewer", sub=sub, sites=["s1"])
    before = metrics(api)
    status, body = get(api, LATEST, other)
    assert status == 200 and [r["site"] for r in rows(body)] == ["s1"] * SITE_DEVICES[1]
    assert delta(before, metrics(api))["thermocline_api_statements_total"] == 1


def test_a_change_committed_before_a_request_is_in_its_answer(api):
    tok = token("viewer", sub="kept-change")
    get(api, LATEST, tok)
    status, ref = get(api, LATEST, tok)  # kept now
    old = {r["device_id"]: r for r in rows(ref)}
    assert old["dev-07"]["temperature"] != 42.5
    # Any writer, any statement: the pipeline's upserts, a replay, psql.
    api.sql(f'UPDATE "{api.t.schema}".latest_state SET temperature = 42.5'
            f" WHERE device_id = 'dev-07'")
    before = metrics(api)
    status, body = get(api, LATEST, tok)
    new = {r["device_id"]: r for r in rows(body)}
    assert status == 200 and new["dev-07"]["temperature"] == 42.5
    assert {k: v for k, v in new.items() if k != "dev-07"} == \
        {k: v for k, v in old.items() if k != "dev-07"}
    d = delta(before, metrics(api))
    assert d["thermocline_api_statements_total"] == 1
    assert d["thermocline_api_answers_reused_total"] == 0
    # A change rolled back moves nothing: the new answer is kept and given again.
    with psycopg.connect(api.dsn) as conn:
        conn.execute(f'UPDATE "{api.t.schema}".latest_state SET temperature = -1')
        conn.rollback()
    before = metrics(api)
    assert get(api, LATEST, tok) == (200, body)
    assert delta(before, metrics(api))["thermocline_api_answers_reused_total"] == 1
    api.sql(f'UPDATE "{api.t.schema}".latest_state SET temperature = %s'
            f" WHERE device_id = 'dev-07'", (old["dev-07"]["temperature"],))


def test_a_kept_answer_is_as_old_as_its_snapshot(api):
    """The version and the rows come from one snapshot: a change committed after a computation's
    snapshot but before it reads the rows is neither in its answer nor hidden from the next
    request by it."""
    tok = token("viewer", sub="kept-snapshot")
    status, ref = get(api, LATEST, tok)
    old = {r["device_id"]: r for r in rows(ref)}
    api.sql(f'UPDATE "{api.t.schema}".latest_state SET humidity = humidity'
            f" WHERE device_id = 'dev-01'")  # a new version: the next request computes
    with concurrent.futures.ThreadPoolExecutor(1) as pool, psycopg.connect(api.dsn) as conn:
        conn.execute(f'LOCK TABLE "{api.t.schema}".latest_state IN ACCESS EXCLUSIVE MODE')
        first = pool.submit(get, api, LATEST, tok)
        wait_until("the request's statement waits for the lock", lambda: blocked(api) == 1)
        # Its snapshot is taken; this change commits before it reads a row.
        conn.execute(f'UPDATE "{api.t.schema}".latest_state SET humidity = 12.5'
                     f" WHERE device_id = 'dev-01'")
        conn.commit()
        assert first.result() == (200, ref)
    status, body = get(api, LATEST, tok)
    assert status == 200 and {r["device_id"]: r for r in rows(body)}["dev-01"]["humidity"] == 12.5
    api.sql(f'UPDATE "{api.t.schema}".latest_state SET humidity = %s'
            f" WHERE device_id = 'dev-01'", (old["dev-01"]["humidity"],))
