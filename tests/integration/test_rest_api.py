"""The REST API (`thermocline serve`): authentication and roles, parameters and Problem Details,
pagination, streamed formats read back by Python's csv and json and by pyarrow, the OpenAPI
document against the server, SQL injection, rate limits and the audit record.

One server per module over a contract schema of its own (rest_api.py); the rate-limit and key
tests start their own with other settings.
"""

import csv
import hashlib
import io
import json
import urllib.parse

import hmac

import jwt
import psycopg
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rest_api import ROLES, SECRET, Api, b64url, token

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
                            f"{hashlib.sha256(b'svc-key-1').hexdigest()} operator ingest-bot\n")
    a = Api(extra=[f"api.jwks_file={d / 'jwks.json'}", f"api.keys_file={d / 'keys'}",
                   "api.rate_per_s=100000", "api.rate_burst=100000"])
    a.rsa_key, a.ec_key = rsa_key, ec_key
    yield a
    assert a.close() == 0


def _rows(api, query, params=None):
    """query as the service's login, with the contract schema as search_path."""
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path = "{api.api_schema}"; SET TimeZone = \'UTC\'')
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
    assert all(actor is None and detail["status"] == 401 for actor, _, _, detail, _ in refused)


def test_good_tokens_and_keys(api):
    assert api.get("/v1/devices").status == 200
    assert api.request("/v1/devices", tok=token("analyst", key=api.rsa_key, alg="RS256",
                                                 headers={"kid": "r1"})).status == 200
    assert api.request("/v1/devices", tok=token("analyst", key=api.ec_key, alg="ES256",
                                                 headers={"kid": "e1"})).status == 200
    assert api.request("/v1/devices", key="svc-key-1").status == 200
    assert api.request("/v1/devices", key="svc-key-2").status == 401
    assert api.request("/v1/devices", tok=token("viewer"), key="svc-key-1").status == 401
    # A valid token whose role is not one of the API's: 403, not 401.
    r = api.request("/v1/devices", tok=token("superuser"))
    assert r.status == 403 and r.ctype == "application/problem+json"


def test_each_request_runs_as_its_role(api):
    # The contract's devices view hides site s2 from thermocline_viewer: the rows differ by role
    # only if the statement really ran as that role.
    everyone = {r[0] for r in _rows(api, "SELECT device_id FROM devices")}
    hidden = {r[0] for r in _rows(api, "SELECT device_id FROM r WHERE tags->>'site' = 's2'")}
    assert hidden and hidden < everyone
    for role in ROLES:
        got = {d["device_id"] for d in api.get("/v1/devices?limit=100", role=role).json()["data"]}
        assert got == (everyone - hidden if role == "viewer" else everyone), role
    # And the audit record says who and as which role.
    actor, role, action, detail, rows = api.audit()[-1]
    assert (actor, role, action) == ("admin-user", "thermocline_admin", "api.request")
    assert detail["path"] == "/v1/devices" and detail["status"] == 200 and rows == len(everyone)


def test_redrive_needs_the_operator_role(api):
    for role in ROLES:
        r = api.get("/v1/dead-letters/redrive?ids=1,2,3", role=role, method="POST")
        if role in ("operator", "admin"):
            assert r.status == 200, (role, r.body)
            assert r.json() == {"requested": 3}
        else:
            assert r.status == 403, (role, r.body)
    assert api.request("/v1/dead-letters/redrive?ids=1", key="svc-key-1", method="POST").status == 200
    assert api.get("/v1/dead-letters/redrive?ids=1", role="operator").status == 405


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

@pytest.mark.parametrize("route,key,query", [
    ("/v1/devices", "device_id", "SELECT device_id FROM devices ORDER BY 1"),
    (f"/v1/devices/{DEV}/readings", "time",
     f"SELECT time FROM readings('{DEV}', '2026-11-01T00:00:00Z', '2026-11-03T12:00:00Z', '1m')"
     " ORDER BY 1"),
    ("/v1/dead-letters", "id", "SELECT id FROM dead_letters ORDER BY 1"),
])
def test_pagination_walks_every_row_once(api, route, key, query):
    expect = [r[0] for r in _rows(api, query)]
    params = RANGE + "&" if "readings" in route else ""
    seen, cursor, pages = [], None, 0
    while True:
        path = f"{route}?{params}limit=7" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = api.get(path, role="admin").json()
        seen += [row[key] for row in page["data"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
        assert len(page["data"]) == 7
    assert len(seen) == len(expect) and len(set(seen)) == len(seen)
    assert pages == max(1, (len(expect) + 6) // 7)


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
    expect = _rows(api, f"SELECT time, device_id, n, temperature, humidity FROM readings('{DEV}',"
                        " '2026-11-01T00:00:00Z', '2026-11-03T12:00:00Z', '1m') ORDER BY time")
    assert len(expect) > 1000 // 25

    def same(rows):
        assert len(rows) == len(expect)
        for got, want in zip(rows, expect):
            assert got[0] == want[0].isoformat().replace("+00:00", "Z").replace(".000000", "") or \
                got[0] == want[0], (got, want)
            assert got[1] == want[1] and int(got[2]) == want[2]
            for g, w in zip(got[3:], want[3:]):
                assert (g in (None, "") and w is None) or float(g) == w

    path = f"/v1/devices/{DEV}/readings?{RANGE}"
    r = api.get(path + "&format=csv")
    assert r.status == 200 and r.ctype.startswith("text/csv")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    table = list(csv.reader(io.StringIO(r.body.decode())))
    assert table[0] == ["time", "device_id", "n", "temperature", "humidity"]
    same([tuple(x) for x in table[1:]])
    r = api.get(path, headers={"Accept": "application/x-ndjson"})
    assert r.ctype == "application/x-ndjson"
    lines = [json.loads(x) for x in r.body.decode().splitlines()]
    same([(x["time"], x["device_id"], x["n"], x["temperature"], x["humidity"]) for x in lines])
    r = api.get(path + "&format=parquet")
    assert r.ctype == "application/vnd.apache.parquet"
    t = pq.read_table(io.BytesIO(r.body))
    assert t.column_names == ["time", "device_id", "n", "temperature", "humidity"]
    assert str(t.schema.field("time").type) == "timestamp[us, tz=UTC]"
    got = t.to_pylist()
    assert [x["time"] for x in got] == [w[0] for w in expect]
    assert [(x["device_id"], x["n"], x["temperature"], x["humidity"]) for x in got] == \
        [tuple(w[1:]) for w in expect]


def test_large_stream_in_several_row_groups(api):
    # Every row of the table, raw, as Parquet: more rows than one row group holds in memory.
    api.sql(f"INSERT INTO {api.api_schema}.r SELECT timestamptz '2026-11-10T00:00:00Z'"
            " + (i || ' seconds')::interval, 'dev-big', i, NULL, NULL, '{}'::jsonb"
            " FROM generate_series(1, 20000) i")
    r = api.get("/v1/devices/dev-big/readings?from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z"
                "&format=parquet&resolution=raw")
    f = pq.ParquetFile(io.BytesIO(r.body))
    assert f.metadata.num_rows == 20000 and f.metadata.num_row_groups >= 3
    assert f.read().column("temperature").to_pylist() == [float(i) for i in range(1, 20001)]
    r = api.get("/v1/devices/dev-big/readings?from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z"
                "&format=ndjson&resolution=raw")
    assert len(r.body.decode().splitlines()) == 20000
    assert api.audit()[-1][4] == 20000


def test_downsampling_follows_the_range(api):
    def n_rows(q):
        return len(api.get(f"/v1/devices/{DEV}/readings?{q}&format=ndjson").body.splitlines())
    day = n_rows("from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z")
    week = n_rows("from=2026-11-01T00:00:00Z&to=2026-11-06T00:00:00Z")
    month = n_rows("from=2026-11-01T00:00:00Z&to=2026-11-20T00:00:00Z")
    raw = _rows(api, f"SELECT count(*) FROM r WHERE device_id = '{DEV}' AND time < '2026-11-02'")[0][0]
    hours = _rows(api, f"SELECT count(DISTINCT date_trunc('hour', time)) FROM r WHERE device_id = '{DEV}'")[0][0]
    assert day == raw and month == hours and week >= hours
    forced = n_rows("from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&resolution=1h")
    assert forced == _rows(api, f"SELECT count(DISTINCT date_trunc('hour', time)) FROM r"
                                f" WHERE device_id = '{DEV}' AND time < '2026-11-02'")[0][0]


def test_fleet_latest_quality_anomalies(api):
    f = api.get("/v1/fleet?tag=site:s1&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z").json()
    assert f["data"] and all(b["devices"] > 0 for b in f["data"])
    latest = api.get("/v1/latest?limit=100").json()["data"]
    assert len(latest) == _rows(api, "SELECT count(DISTINCT device_id) FROM r")[0][0]
    assert all("temperature" in x for x in latest)
    one = api.get(f"/v1/devices/{DEV}/latest").json()
    assert one["device_id"] == DEV and one["tags"]["site"] in ("s0", "s1", "s2")
    q = api.get("/v1/quality?from=2026-11-01T00:00:00Z&to=2026-11-01T01:00:00Z").json()["data"]
    assert len(q) == 60
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
          "ids": "1,2"}


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
            extra = "&tag=site:s1" if path == "/v1/fleet" and name != "tag" else ""
            extra += "&ids=1" if "redrive" in path and name != "ids" else ""
            res = api.get(f"{concrete}?{name}={urllib.parse.quote(SAMPLE[name])}{extra}",
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

INJECTIONS = ["'", "''; DROP TABLE r; --", "1 OR 1=1", "dev-01' OR '1'='1", "\\", "%", "_",
              "*", "$1", "'); SELECT pg_sleep(5); --", "\u00e9\u00e8", "a:b' UNION SELECT 1 --",
              "2026-11-01T00:00:00Z'; DELETE FROM r; --", "1;DELETE FROM dead_letters",
              "\" OR \"\"=\"", "site:s1' OR 'x'='x", "NULL", "%00", "%27"]


def test_sql_injection_changes_nothing_and_leaks_nothing(api):
    before = _rows(api, "SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM dead_letters)")
    viewer_sees = len(api.get("/v1/devices?limit=100").json()["data"])
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
                r = api.get(url, role="viewer", method=method.upper())
                checked += 1
                assert r.status in (200, 400, 403, 404), (url, r.status, r.body)
                text = r.body.decode(errors="replace").lower()
                if r.ctype == "application/problem+json":
                    text = r.json()["detail"].lower()  # not the echoed instance
                for leak in ("sqlstate", "syntax error", "pg_", "select ", "relation"):
                    assert leak not in text, (url, text[:300])
                if r.status == 200 and r.ctype == "application/json" and path == "/v1/devices":
                    assert len(r.json()["data"]) <= viewer_sees
    assert checked > 300
    assert _rows(api, "SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM dead_letters)") == before


def _query_names(api, path, method):
    doc = api.request("/v1/openapi.json").json()
    return " ".join(f"{p['name']}=" for p in doc["paths"][path][method]["parameters"])


# ---- rate limits, API key file, audit ----

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
