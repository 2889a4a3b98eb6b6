"""The REST API (`thermocline serve`) over the api schema `migrate` creates: authentication and
roles (rows by site, masking, operator-only writes, all decided in PostgreSQL), parameters and
Problem Details, pagination, streamed formats read back by Python's csv and json and by pyarrow,
the OpenAPI document against the server, SQL injection, rate limits and the audit record.

One server per module over a store of its own (rest_api.py); the rate-limit and key-file tests
start their own with other settings.
"""

import csv
import hashlib
import io
import json
import urllib.parse

import datetime
import hmac
import http.client
import time

import jwt
import psycopg
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rest_api import ROLES, SECRET, Api, b64url, token
from waits import wait_for

DEV = "dev-03"
RANGE = "from=2026-11-01T00:00:00Z&to=2026-11-03T12:00:00Z"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())) | {"kid": "r1"},
                     json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())) | {"kid": "e1"}]}
    (d / "jwks.json").write_text(json.dumps(jwks))
    (d / "keys").write_text("# service keys\n"
                            f"{hashlib.sha256(b'svc-key-1').hexdigest()} operator ingest-bot *\n"
                            f"{hashlib.sha256(b'svc-key-2').hexdigest()} viewer s1-bot s1\n")
    a = Api(extra=[f"api.jwks_file={d / 'jwks.json'}", f"api.keys_file={d / 'keys'}",
                   "api.rate_per_s=100000", "api.rate_burst=100000"])
    a.rsa_key, a.ec_key = rsa_key, ec_key
    yield a
    assert a.close() == 0


def _rows(api, query, params=None):
    """query as the test's superuser (who sees every site, unmasked) in the api schema."""
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{api.api_schema}"')
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(query, params).fetchall()


# ---- authentication and roles ----

def test_credentials_refused_with_401(api):
    pem = api.rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    none_tok = b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(b'{"sub":"x","role":"admin"}') + "."
    bad = {
        "missing": None,
        "expired": token(exp_in=-10),
        "wrong secret": token(key="another-secret-0123456789abcdef0123456789abcdef0123456789abcdef"),
        "alg none": none_tok,
        "RS256 of an unknown kid": token(key=api.rsa_key, alg="RS256", headers={"kid": "nope"}),
        "ES256 token under the RSA kid": token(key=api.ec_key, alg="ES256", headers={"kid": "r1"}),
        "HS384": token(alg="HS384"),
        "not a JWT": "abc.def",
    }
    # HS/RS confusion: a token HMAC'ed with the RSA public key's PEM as if it were a secret
    # (PyJWT refuses to do it, so the token is built by hand).
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode())
    body = b64url(json.dumps({"sub": "x", "role": "admin"}).encode())
    sig = b64url(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    bad["HS256 signed with the public key (HS/RS confusion)"] = f"{head}.{body}.{sig}"
    good = token("viewer").split(".")
    good[1] = b64url(json.dumps({"sub": "x", "role": "admin", "exp": 4102444800}).encode())
    bad["tampered payload"] = ".".join(good)
    before = len(api.audit())
    for what, tok in bad.items():
        r = api.request("/v1/devices", tok=tok)
        assert r.status == 401, (what, r.status, r.body)
        assert r.ctype == "application/problem+json", what
        assert r.headers.get("WWW-Authenticate") == "Bearer", what
        assert r.json()["status"] == 401
    # Refusals are audited too, without a subject.
    refused = api.audit()[before:]
    assert len(refused) == len(bad)
    for sub, role, target, params, _, status in refused:
        assert (sub, role, target, status) == (None, "thermocline_authenticator", "GET /v1/devices",
                                               "refused")
        assert params["http_status"] == 401


def test_good_tokens_and_keys(api):
    assert api.get("/v1/devices").status == 200
    assert api.request("/v1/devices", tok=token("analyst", key=api.rsa_key, alg="RS256",
                                                 headers={"kid": "r1"})).status == 200
    assert api.request("/v1/devices", tok=token("analyst", key=api.ec_key, alg="ES256",
                                                 headers={"kid": "e1"})).status == 200
    assert len(api.request("/v1/devices", key="svc-key-1").json()["data"]) == 25
    s1 = api.request("/v1/devices", key="svc-key-2").json()["data"]
    assert s1 and {d["site"] for d in s1} == {"s1"}
    assert api.request("/v1/devices", key="svc-key-3").status == 401
    assert api.request("/v1/devices", tok=token("viewer"), key="svc-key-1").status == 401
    # A valid token whose role is not one of the API's: 403, not 401.
    r = api.request("/v1/devices", tok=token("superuser"))
    assert r.status == 403 and r.ctype == "application/problem+json"


def test_each_request_runs_as_its_role(api):
    # Rows by site and masking live in the api schema's views: the answers differ by role and
    # claims only if each statement really ran as that role with those claims.
    site = dict(_rows(api, "SELECT device_id, site FROM devices"))
    assert set(site.values()) == {"s0", "s1", "s2"}
    for role, sites, want in [("viewer", ["s0"], {"s0"}), ("analyst", ["s0", "s2"], {"s0", "s2"}),
                              ("operator", [], set()), ("admin", [], {"s0", "s1", "s2"})]:
        r = api.request("/v1/devices?limit=100", tok=token(role, sites=sites))
        got = {d["device_id"] for d in r.json()["data"]}
        assert got == {d for d, s in site.items() if s in want}, role
    dev = next(d for d, s in site.items() if s == "s0")
    lat = {role: api.get(f"/v1/devices/{dev}/latest", role=role).json()["latitude"] for role in ROLES}
    assert lat == {"viewer": 48.12, "analyst": 48.123456, "operator": 48.123456, "admin": 48.123456}
    # And the audit record says who and as which role.
    sub, role, target, params, rows, status = api.audit()[-1]
    assert (sub, role, target, status) == ("admin-user", "thermocline_admin",
                                           f"GET /v1/devices/{dev}/latest", "ok")
    assert params["http_status"] == 200 and rows == 1


def test_dead_letters_and_redrive_need_the_operator_role(api):
    api.t.cmd("topics", "create")
    for role in ROLES:
        listed = api.get("/v1/dead-letters?limit=5", role=role)
        # Refused before the first byte in a streamed format too, not a stream cut short.
        csv_r = api.get("/v1/dead-letters?format=csv", role=role)
        assert csv_r.status == listed.status, (role, csv_r.status)
        assert csv_r.ctype == ("text/csv; charset=utf-8" if listed.status == 200
                               else "application/problem+json")
        r = api.get("/v1/dead-letters/redrive?ids=1,2,3,999", role=role, method="POST")
        if role in ("operator", "admin"):
            assert listed.status == 200 and len(listed.json()["data"]) == 5
            assert r.status == 200, (role, r.body)
            assert r.json() == {"found": 3, "redriven": 3}
        else:
            assert listed.status == 403 and r.status == 403, (role, listed.body, r.body)
    counts = api.sql(f'SELECT id, redrive_count FROM "{api.t.schema}".dead_letters WHERE id <= 4'
                     " ORDER BY id")
    assert counts == [(1, 2), (2, 2), (3, 2), (4, 0)]
    assert api.request("/v1/dead-letters/redrive?ids=4", key="svc-key-1", method="POST").json() == \
        {"found": 1, "redriven": 1}
    assert api.get("/v1/dead-letters/redrive?ids=1", role="operator").status == 405
    # What was sent is on the topic: the payloads of 1, 2, 3 twice and 4 once.
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": api.t.brokers, "group.id": f"rest-{api.port}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([api.t.topic])
    got, deadline = [], time.monotonic() + 60
    while len(got) < 7 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted([b'{"device_id":"dev-%d"}' % i for i in (1, 2, 3, 1, 2, 3, 4)])


# ---- parameters ----

@pytest.mark.parametrize("path,param", [
    ("/v1/devices?limit=0", "limit"),
    ("/v1/devices?limit=10001", "limit"),
    ("/v1/devices?limit=ten", "limit"),
    ("/v1/devices?limit=5&limit=6", "limit"),
    ("/v1/devices?tag=site", "tag"),
    ("/v1/devices?glob=", "glob"),
    ("/v1/devices?color=red", "color"),
    ("/v1/devices?cursor=abc", "cursor"),
    (f"/v1/devices/{DEV}/readings?from=yesterday", "from"),
    (f"/v1/devices/{DEV}/readings?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "from"),
    (f"/v1/devices/{DEV}/readings?resolution=5m", "resolution"),
    (f"/v1/devices/{DEV}/readings?format=xml", "format"),
    ("/v1/fleet", "tag"),
    ("/v1/fleet?tag=site&resolution=raw", "resolution"),
    ("/v1/dead-letters/redrive?ids=1,x", "ids"),
])
def test_invalid_parameters_are_named(api, path, param):
    r = api.get(path, role="admin", method="POST" if "redrive" in path else "GET")
    assert r.status == 400, r.body
    assert r.ctype == "application/problem+json"
    p = r.json()
    assert p["status"] == 400 and p["title"] and param in p["detail"]
    assert p["invalid-params"][0]["name"] == param
    assert p["instance"] == path.split("?")[0]


def test_unknown_device_is_404_and_accept_406(api):
    r = api.get("/v1/devices/no-such-device")
    assert r.status == 404 and r.ctype == "application/problem+json"
    assert api.get(f"/v1/devices/{DEV}/readings", headers={"Accept": "image/png"}).status == 406
    assert api.get("/v1/nothing-here").status == 404


# ---- pagination ----

@pytest.mark.parametrize("route,params,keys,query", [
    ("/v1/devices", "", ["device_id"], "SELECT device_id FROM devices ORDER BY 1"),
    (f"/v1/devices/{DEV}/readings", RANGE, ["time"],
     f"SELECT time FROM readings('{DEV}', '2026-11-01T00:00:00Z', '2026-11-03T12:00:00Z')"),
    ("/v1/dead-letters", "", ["id"], "SELECT id FROM dead_letters ORDER BY 1"),
    ("/v1/quality", "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z", ["bucket", "device_id"],
     "SELECT bucket, device_id FROM quality ORDER BY 1, 2"),
    ("/v1/fleet", "tag=site&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z&resolution=1h",
     ["bucket", "tag_value"],
     "SELECT bucket, tag_value FROM fleet('site', '2026-11-01T00:00:00Z', '2026-11-03T00:00:00Z',"
     " '1h') ORDER BY 1, 2"),
])
def test_pagination_walks_every_row_once(api, route, params, keys, query):
    expect = [tuple(r) for r in _rows(api, query)]
    assert len(expect) > 14
    seen, cursor, pages = [], None, 0
    while True:
        path = f"{route}?{params}&limit=7" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = api.get(path.replace("?&", "?"), role="admin").json()
        seen += [tuple(row[k] for k in keys) for row in page["data"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
        assert len(page["data"]) == 7
    assert len(seen) == len(expect) and len(set(seen)) == len(seen)
    assert pages == (len(expect) + 6) // 7


def test_cursors_are_tamper_proof(api):
    nxt = api.get("/v1/devices?limit=2").json()["next"]
    payload, mac = nxt.split(".")
    forged = b64url(b"listDevices|dev-20") + "." + mac
    flipped = payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    for c in (forged, flipped, nxt[:-1], nxt + "A"):
        r = api.get(f"/v1/devices?cursor={urllib.parse.quote(c)}")
        assert r.status == 400 and r.json()["invalid-params"][0]["name"] == "cursor", c
    # A cursor of another route is refused too.
    r = api.get(f"/v1/dead-letters?cursor={urllib.parse.quote(nxt)}")
    assert r.status == 400


# ---- formats ----

def test_streamed_formats_equal_the_store(api):
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{api.api_schema}"')
        cur = conn.execute(f"SELECT * FROM readings('{DEV}', '2026-11-01T00:00:00Z',"
                           " '2026-11-03T12:00:00Z') ORDER BY time")
        names = [d.name for d in cur.description]
        expect = cur.fetchall()
    assert len(expect) > 1000 // 25 and names[:4] == ["device_id", "time", "step", "n"]

    def same(rows, parse):
        assert len(rows) == len(expect)
        for got, want in zip(rows, expect):
            for name, g, w in zip(names, got, want):
                if name == "time":
                    assert parse(g) == w, (g, w)
                elif isinstance(w, (float, int)) and not isinstance(w, bool):
                    assert g not in (None, "") and float(g) == w, (name, g, w)
                else:
                    assert (g in (None, "") and w is None) or g == w, (name, g, w)

    def iso(t):
        return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))

    path = f"/v1/devices/{DEV}/readings?{RANGE}"
    r = api.get(path + "&format=csv")
    assert r.status == 200 and r.ctype.startswith("text/csv")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    table = list(csv.reader(io.StringIO(r.body.decode())))
    assert table[0] == names
    same(table[1:], iso)
    r = api.get(path, headers={"Accept": "application/x-ndjson"})
    assert r.ctype == "application/x-ndjson"
    lines = [json.loads(x) for x in r.body.decode().splitlines()]
    same([[x[n] for n in names] for x in lines], iso)
    r = api.get(path + "&format=parquet")
    assert r.ctype == "application/vnd.apache.parquet"
    t = pq.read_table(io.BytesIO(r.body))
    assert t.column_names == names
    assert str(t.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert [tuple(x[n] for n in names) for x in t.to_pylist()] == [tuple(w) for w in expect]


def test_large_stream_in_several_row_groups(api):
    # A day of readings every 4 seconds, raw, as Parquet: more rows than one row group holds.
    api.sql(f'INSERT INTO "{api.t.schema}".readings (time, device_id, temperature, tags,'
            " kafka_partition, kafka_offset, schema_version) SELECT timestamptz '2026-11-10T00:00:00Z'"
            " + (i * 4 || ' seconds')::interval, 'dev-00', i, '{\"site\": \"s0\"}', 1, i, 1"
            " FROM generate_series(1, 20000) i")
    day = "from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z"
    r = api.get(f"/v1/devices/dev-00/readings?{day}&format=parquet")
    f = pq.ParquetFile(io.BytesIO(r.body))
    assert f.metadata.num_rows == 20000 and f.metadata.num_row_groups >= 3
    assert f.read().column("temperature").to_pylist() == [float(i) for i in range(1, 20001)]
    r = api.get(f"/v1/devices/dev-00/readings?{day}&format=ndjson")
    assert len(r.body.decode().splitlines()) == 20000
    assert api.audit()[-1][4] == 20000
    # A client that goes away mid-stream: the query is cancelled, the connection goes back to
    # the pool (more requests than the pool holds still work) and the request is recorded (499).
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        conn.request("GET", f"/v1/devices/dev-00/readings?{day}&format=csv&resolution=raw",
                     headers={"Authorization": f"Bearer {token('admin')}"})
        resp = conn.getresponse()
        assert resp.status == 200 and len(resp.read(4096)) == 4096
        conn.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cut = [a for a in api.audit() if a[3]["http_status"] == 499]
        if len(cut) == 3:
            break
        time.sleep(0.2)
    assert len(cut) == 3 and all(status == "aborted" for *_, status in cut)
    for _ in range(12):  # api.pool_size is 8
        assert api.get("/v1/devices/dev-00/latest").status == 200


def test_downsampling_follows_the_range(api):
    def steps(q):
        lines = api.get(f"/v1/devices/{DEV}/readings?{q}&format=ndjson").body.splitlines()
        return len(lines), {json.loads(x)["step"] for x in lines}
    assert steps("from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z")[1] == {"raw"}
    assert steps("from=2026-11-01T00:00:00Z&to=2026-11-06T00:00:00Z")[1] == {"1m"}
    n, kinds = steps("from=2026-11-01T00:00:00Z&to=2026-11-20T00:00:00Z")
    assert kinds == {"1h"}
    assert n == _rows(api, f"SELECT count(*) FROM readings_1h WHERE device_id = '{DEV}'")[0][0]
    assert steps("from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&resolution=1h")[1] == {"1h"}


def test_fleet_latest_quality_anomalies(api):
    f = api.get("/v1/fleet?tag=site&value=s1&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z"
                "&resolution=1h&limit=1000").json()
    assert f["data"] and {b["tag_value"] for b in f["data"]} == {"s1"}
    assert sum(b["n"] for b in f["data"]) == _rows(
        api, "SELECT count(*) FROM readings_raw r JOIN devices d USING (device_id)"
             " WHERE d.site = 's1' AND r.time < '2026-11-03'")[0][0]
    latest = api.get("/v1/latest?limit=100").json()["data"]
    assert len(latest) == _rows(api, "SELECT count(*) FROM latest")[0][0] == 25
    one = api.get(f"/v1/devices/{DEV}/latest").json()
    assert one["device_id"] == DEV and one["site"] in ("s0", "s1", "s2")
    q = api.get(f"/v1/quality?device_id={DEV}&from=2026-11-01T00:00:00Z&to=2026-11-01T01:00:00Z").json()
    assert len(q["data"]) == _rows(api, f"SELECT count(*) FROM quality WHERE device_id = '{DEV}'"
                                        " AND bucket < '2026-11-01T01:00:00Z'")[0][0] > 0
    a = api.get("/v1/anomalies?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&limit=10").json()
    assert len(a["data"]) == 10 and a["next"]


# ---- the OpenAPI document ----

EXPECTED_ROUTES = {
    ("get", "/v1/openapi.json"), ("get", "/v1/devices"), ("get", "/v1/devices/{device_id}"),
    ("get", "/v1/devices/{device_id}/latest"), ("get", "/v1/devices/{device_id}/readings"),
    ("get", "/v1/latest"), ("get", "/v1/fleet"), ("get", "/v1/dead-letters"),
    ("post", "/v1/dead-letters/redrive"), ("get", "/v1/quality"), ("get", "/v1/anomalies"),
}
SAMPLE = {"limit": "3", "tag": "site:s1", "glob": "dev-0*", "from": "2026-11-01T00:00:00Z",
          "to": "2026-11-02T00:00:00Z", "resolution": "1h", "format": "json", "reason": "reason-1",
          "ids": "1,2", "value": "s1", "device_id": DEV}


def test_openapi_document_matches_the_server(api):
    r = api.request("/v1/openapi.json")  # no credentials needed
    assert r.status == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    routes = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == EXPECTED_ROUTES
    for method, path in routes - {("get", "/v1/openapi.json")}:
        op = doc["paths"][path][method]
        concrete = path.replace("{device_id}", DEV)
        names = [p["name"] for p in op["parameters"] if p["in"] == "query"]
        # Every documented parameter is taken (alone, with a valid value; a cursor needs a page).
        for name in names:
            if name == "cursor":
                continue
            extra = "&tag=site" if path == "/v1/fleet" and name != "tag" else ""
            value = "site" if path == "/v1/fleet" and name == "tag" else SAMPLE[name]
            extra += "&ids=1" if "redrive" in path and name != "ids" else ""
            res = api.get(f"{concrete}?{name}={urllib.parse.quote(value)}{extra}",
                          role="admin", method=method.upper())
            assert res.status in (200, 404), (path, name, res.status, res.body)
        # ... and no other: an undocumented one is refused, by name.
        res = api.get(f"{concrete}?undocumented=1", role="admin", method=method.upper())
        assert res.status == 400 and res.json()["invalid-params"][0]["name"] == "undocumented"
        # Every documented status has a response schema, problems as problem+json.
        assert "200" in op["responses"] and "400" in op["responses"]
        assert "application/problem+json" in op["responses"]["401"]["content"]
    # Routes not in the document do not exist.
    for method, path in [("GET", "/v1"), ("GET", "/v1/device"), ("DELETE", "/v1/devices"),
                         ("GET", "/v2/devices"), ("POST", "/v1/devices")]:
        assert api.get(path, role="admin", method=method).status in (404, 405), path


# ---- injection ----

INJECTIONS = ["'", "''; DROP TABLE readings; --", "1 OR 1=1", "dev-01' OR '1'='1", "\\", "%", "_",
              "*", "$1", "'); SELECT pg_sleep(5); --", "\u00e9\u00e8", "a:b' UNION SELECT 1 --",
              "2026-11-01T00:00:00Z'; DELETE FROM readings; --", "1;DELETE FROM dead_letters",
              "\" OR \"\"=\"", "site:s1' OR 'x'='x", "NULL", "%00", "%27"]


def test_sql_injection_changes_nothing_and_leaks_nothing(api):
    count = "SELECT (SELECT count(*) FROM readings_raw), (SELECT count(*) FROM dead_letters)"
    before = _rows(api, count)
    # A viewer of one site: an injection that widened a filter would show the others.
    tok = token("viewer", sites=["s1"])
    viewer_sees = len(api.request("/v1/devices?limit=100", tok=tok).json()["data"])
    assert 0 < viewer_sees < 25
    checked = 0
    for method, path in EXPECTED_ROUTES - {("get", "/v1/openapi.json")}:
        names = ["device_id"] if "{device_id}" in path else []
        names += [n for n in SAMPLE if f"{n}=" in _query_names(api, path, method)]
        for name in names:
            for bad in INJECTIONS:
                if name == "device_id":
                    url = path.replace("{device_id}", urllib.parse.quote(bad, safe=""))
                else:
                    base = path.replace("{device_id}", DEV)
                    url = f"{base}?{name}={urllib.parse.quote(bad, safe='%')}"
                r = api.request(url, tok=tok, method=method.upper())
                checked += 1
                assert r.status in (200, 400, 403, 404), (url, r.status, r.body)
                text = r.body.decode(errors="replace").lower()
                if r.ctype == "application/problem+json":
                    text = r.json()["detail"].lower()  # not the echoed instance
                for leak in ("sqlstate", "syntax error", "pg_", "select ", "relation"):
                    assert leak not in text, (url, text[:300])
                if r.status == 200 and r.ctype == "application/json" and "data" in r.json():
                    sites = {row.get("site") for row in r.json()["data"]} - {None}
                    assert sites <= {"s1"}, (url, sites)
                    if path in ("/v1/devices", "/v1/latest"):
                        assert len(r.json()["data"]) <= viewer_sees
    assert checked > 300
    assert _rows(api, count) == before


def _query_names(api, path, method):
    doc = api.request("/v1/openapi.json").json()
    return " ".join(f"{p['name']}=" for p in doc["paths"][path][method]["parameters"])


# ---- rate limits, API key file, audit ----

def test_the_pools_connections_are_warm_before_the_first_request():
    """serve opens every connection of its pool and runs the readings statement once on each
    before it listens: a backend's first run plans it and opens every daily partition, which the
    first requests after a start would otherwise pay, queued. Seen from PostgreSQL: each run reads
    latest_state's key once (the sites check of readings_raw), and no request has been made."""
    a = Api(extra=["api.pool_size=3"])
    try:
        warm = [line for line in a.early if "database connections warmed" in line]
        assert len(warm) == 1 and '"3 of 3 database connections warmed' in warm[0], a.early
        key = f'"{a.t.schema}".latest_state_pkey'

        def scans():
            return a.sql("SELECT pg_stat_get_numscans(%s::regclass)", (key,))[0][0]

        # An idle backend hands its statistics over within PostgreSQL's idle interval (10 s).
        wait_for(lambda: scans() >= 3, timeout=30, what="three reads of latest_state's key")
        assert scans() == 3
        assert not a.audit()
    finally:
        a.close()


def test_a_day_empty_when_the_plan_was_made_is_read_through_the_device_key():
    """The readings statement's generic plan is made once a connection (at the start, by the
    warm-up) and kept. A daily partition empty then -- analyzed, so the planner believes it -- must
    still be read through the device's key once it fills, not scanned whole: after midnight the
    next day's partition is today's, and a scan of it grows with every reading ingested."""
    day = "readings_p20261110"
    a = Api(extra=["api.pool_size=1"], sql=(f"ALTER TABLE {day} SET (autovacuum_enabled = false)",
                                            f"ANALYZE {day}"))
    try:
        s = f'"{a.t.schema}"'
        assert a.sql(f"SELECT count(*) FROM {s}.{day}") == [(0,)]
        a.sql(f"INSERT INTO {s}.readings (time, device_id, temperature, tags, kafka_partition,"
              f" kafka_offset, schema_version) SELECT timestamptz '2026-11-10' + i * interval '2 s',"
              f" 'dev-' || lpad((i % 25)::text, 2, '0'), i % 30, '{{}}', 1, i, 1"
              f" FROM generate_series(0, 29999) i")

        def scans():
            return a.sql("SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relid ="
                         " %s::regclass", (f"{s}.{day}",))[0]

        before = scans()
        r = a.get("/v1/devices/dev-07/readings?resolution=raw&limit=10000"
                  "&from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z")
        assert r.status == 200, r.body
        assert len(r.json()["data"]) == 1200
        # An idle backend hands its statistics over within PostgreSQL's idle interval (10 s).
        wait_for(lambda: (scans()[1] or 0) > (before[1] or 0), timeout=30,
                 what=f"index scan of {day} counted")
        after = scans()
        assert (after[1] or 0) > (before[1] or 0), (before, after)
        assert after[0] == before[0], f"{day} scanned whole: {before} -> {after}"
    finally:
        a.close()


def test_rate_limit_per_caller(tmp_path):
    a = Api(extra=["api.rate_per_s=0.2", "api.rate_burst=3"])
    try:
        alice, bob = token(sub="alice"), token(sub="bob")
        assert [a.request("/v1/devices", tok=alice).status for _ in range(3)] == [200] * 3
        r = a.request("/v1/devices", tok=alice)
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.ctype == "application/problem+json"
        assert a.request("/v1/devices", tok=bob).status == 200  # a bucket per caller
    finally:
        assert a.close() == 0


def test_bad_key_files_stop_the_server(tmp_path):
    from rest_api import Thermocline
    t = Thermocline("rest")
    (tmp_path / "keys").write_text("not-a-digest viewer x\n")
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "RSA", "kid": "k"}]}')
    for setting, needle in [(f"api.keys_file={tmp_path / 'keys'}", "keys:1"),
                            (f"api.jwks_file={tmp_path / 'jwks.json'}", "key 0"),
                            ("api.jwt_secret=short", "api.jwt_secret")]:
        p = t.cmd("serve", extra=["api.listen=127.0.0.1:0", setting], check=False, timeout=60)
        assert p.returncode != 0 and needle in p.stderr, (setting, p.stderr)
