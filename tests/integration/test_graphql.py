"""GraphQL (deploy/graphql/server.js, PostGraphile 4) over the api schema, with JWTs signed here:
every role sees the rows and masked values PostgreSQL gives it (the same as test_api's direct
connections), filtering, cursor pagination and introspection work, a missing, forged, expired or
wrongly signed token is refused, an SQL-injection corpus in the arguments changes and leaks
nothing, requests are audited, and schemathesis' GraphQL mode finds no 5xx with each role's token
and without one."""

import contextlib
import hashlib
import hmac
import json
import os
import selectors
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import jwt
import pytest

from api_data import LAT, READINGS, ROLES, SITES, login_role, seed, visible
from conftest import ROOT, Thermocline
from test_api import INJECTION, snapshot

SECRET = "thermocline-test-secret-0123456789abcdef"
GRAPHQL_DIR = os.path.join(ROOT, "deploy", "graphql")

pytestmark = pytest.mark.skipif(
    not shutil.which("node") or not os.path.isdir(os.path.join(GRAPHQL_DIR, "node_modules")),
    reason="GraphQL needs node and `make graphql` (npm ci in deploy/graphql)")


def token(role="thermocline_viewer", sites=("berlin",), ttl=600, key=SECRET, algorithm="HS256", **extra):
    now = int(time.time())
    claims = {"role": role, "sub": f"it-{role}", "sites": list(sites) if sites != "*" else "*",
              "iat": now, "exp": now + ttl, **extra}
    return jwt.encode(claims, key, algorithm=algorithm)


class Server:
    def __init__(self, proc, url):
        self.proc, self.url = proc, url

    def post(self, query, variables=None, tok=None, raw=None):
        body = raw if raw is not None else json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def data(self, query, variables=None, tok=None):
        status, body = self.post(query, variables, tok or token())
        assert status == 200 and "errors" not in body, (status, body)
        return body["data"]


@pytest.fixture(scope="module")
def gql():
    """One store and one server for the module: the tests only read (the audit log grows)."""
    tc = Thermocline("graphql")
    try:
        tc.migrate()
        seed(tc)
        with login_role(tc, "thermocline_authenticator", noinherit=True) as user:
            with serve(tc, user) as server:
                yield server
    finally:
        tc.drop()


@contextlib.contextmanager
def serve(tc, user, key_file=None):
    env = dict(os.environ, THERMOCLINE_PG_DSN=f"{tc.dsn} user={user}",
               THERMOCLINE_API_SCHEMA=tc.api_schema, THERMOCLINE_AUDIT_SCHEMA=tc.audit_schema,
               THERMOCLINE_GRAPHQL_LISTEN="127.0.0.1:0")
    if key_file:
        env["THERMOCLINE_GRAPHQL_JWT_PUBLIC_KEY"] = key_file
    else:
        env["THERMOCLINE_GRAPHQL_JWT_SECRET"] = SECRET
    proc = subprocess.Popen(["node", os.path.join(GRAPHQL_DIR, "server.js")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if "listening on " in line:
                    url = line.split("listening on ")[1].split()[0]
        sel.close()
        assert url, f"the GraphQL server did not start: {proc.stderr.read() if proc.poll() is not None else ''}"
        server = Server(proc, url)
        server.tc = tc
        # Ready once the schema is built: the first query answers (with any token, or 401).
        while time.monotonic() < deadline:
            status, _ = server.post("{ __typename }", tok=None if key_file else token())
            if status in (200, 401):
                break
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        # The pool's connections go with the process; only then can the role go.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tc.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,))[0][0]:
            time.sleep(0.2)


def audited(tc, where, want, timeout=30):
    """The audit rows matching where, once want(rows) holds (they are written after the
    response) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        got = tc.sql(f'SELECT actor, role, claims->>\'sub\', target, status, duration_ms FROM'
                     f' "{tc.audit_schema}".events WHERE action = \'graphql\' AND {where} ORDER BY id')
        if want(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


DEVICES_Q = "{ allDevices(orderBy: DEVICE_ID_ASC) { nodes { deviceId site schemaVersion } } }"
LATEST_Q = "{ allLatests(orderBy: DEVICE_ID_ASC) { nodes { deviceId latitude longitude temperature } } }"
READINGS_Q = """query($d: String!, $from: Datetime!, $to: Datetime!, $r: String) {
  readings(device: $d, from: $from, to: $to, resolution: $r) { nodes { deviceId time step latitude } } }"""


def window(seconds):
    now = time.time()
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return time.strftime(fmt, time.gmtime(now - seconds)), time.strftime(fmt, time.gmtime(now + 60))


@pytest.mark.parametrize("role", ROLES)
def test_rows_and_masking_follow_the_token(gql, role):
    for sites in (("berlin",), ("munich",), (), "*"):
        tok = token(role, sites)
        want = visible(None if role == "thermocline_admin" or sites == "*" else set(sites))
        got = gql.data(DEVICES_Q, tok=tok)["allDevices"]["nodes"]
        assert {n["deviceId"] for n in got} == want
        assert all(n["schemaVersion"] == 2 and n["site"] == SITES[n["deviceId"]] for n in got)
        for n in gql.data(LATEST_Q, tok=tok)["allLatests"]["nodes"]:
            exact = role != "thermocline_viewer"
            assert n["latitude"] == (LAT[n["deviceId"]] if exact else round(LAT[n["deviceId"]], 2))
        f, t = window(3600)
        got = gql.data(READINGS_Q, {"d": "d-berlin-1", "from": f, "to": t}, tok)["readings"]["nodes"]
        assert len(got) == (READINGS if "d-berlin-1" in want else 0)
        assert all(n["step"] == "raw" for n in got)


def test_refused_by_role(gql):
    q = "{ allDeadLetters { nodes { id reason payload } } }"
    for role in ROLES:
        status, body = gql.post(q, tok=token(role, "*"))
        if role in ("thermocline_operator", "thermocline_admin"):
            assert status == 200 and len(body["data"]["allDeadLetters"]["nodes"]) == 2, body
        else:
            assert "permission denied" in json.dumps(body.get("errors")), (role, body)
            assert not (body.get("data") or {}).get("allDeadLetters")


def test_filter_pagination_introspection(gql):
    tok = token("thermocline_analyst", "*")
    got = gql.data('{ allDevices(filter: {site: {equalTo: "berlin"}}) { totalCount nodes { deviceId } } }', tok=tok)
    assert got["allDevices"]["totalCount"] == 2
    assert {n["deviceId"] for n in got["allDevices"]["nodes"]} == {"d-berlin-1", "d-berlin-2"}
    got = gql.data('{ allAnomalies(condition: {metric: "latitude"}, filter: {deviceId: {startsWith: "d-m"}})'
                   " { nodes { deviceId observed } } }", tok=tok)
    assert got["allAnomalies"]["nodes"] == [{"deviceId": "d-munich-1", "observed": LAT["d-munich-1"]}]
    # Cursor pagination, two at a time, through all four devices.
    seen, after = [], None
    for _ in range(5):
        page = gql.data("query($after: Cursor) { allLatests(first: 2, after: $after, orderBy: DEVICE_ID_ASC)"
                        " { nodes { deviceId } pageInfo { hasNextPage endCursor } } }", {"after": after}, tok)
        seen += [n["deviceId"] for n in page["allLatests"]["nodes"]]
        if not page["allLatests"]["pageInfo"]["hasNextPage"]:
            break
        after = page["allLatests"]["pageInfo"]["endCursor"]
    assert seen == sorted(SITES)
    # Introspection shows the contract and none of the helpers.
    fields = {f["name"] for f in gql.data("{ __schema { queryType { fields { name } } } }", tok=tok)
              ["__schema"]["queryType"]["fields"]}
    assert {"allDevices", "allLatests", "allReadingsRaws", "allReadings1Hs", "allQualities", "allAnomalies",
            "readings", "fleet", "deadLetterCounts", "version"} <= fields
    assert not {f for f in fields if "site" in f.lower() or f.startswith("_")}, fields
    got = gql.data('{ fleet(tag: "site", from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z")'
                   " { nodes { tagValue devices step } } }", tok=tok)
    assert {(n["tagValue"], int(n["devices"])) for n in got["fleet"]["nodes"]} == {("berlin", 2), ("munich", 1), (None, 1)}
    # Mutations: none (the api has no writes for GraphQL).
    status, body = gql.post("mutation { __typename }", tok=tok)
    assert "errors" in body


def test_tokens_refused(gql):
    q = DEVICES_Q
    first = gql.tc.sql(f'SELECT coalesce(max(id), 0) FROM "{gql.tc.audit_schema}".events')[0][0]
    assert gql.post(q)[0] == 401
    assert gql.post(q, tok="not-a-jwt")[0] == 401
    assert gql.post(q, tok=token(key="another-secret-of-enough-length-0123456789"))[0] == 401
    assert gql.post(q, tok=token(ttl=-120))[0] == 401
    assert gql.post(q, tok=token(nbf=int(time.time()) + 3600))[0] == 401
    unsigned = jwt.encode({"role": "thermocline_admin", "sites": "*", "exp": int(time.time()) + 600},
                          None, algorithm="none")
    assert gql.post(q, tok=unsigned)[0] == 401
    # A forged admin token: a viewer's token with the payload changed, signature kept.
    head, _, sig = token().split(".")
    body = jwt.utils.base64url_encode(json.dumps({"role": "thermocline_admin", "sites": "*",
                                                  "exp": int(time.time()) + 600}).encode()).decode()
    assert gql.post(q, tok=f"{head}.{body}.{sig}")[0] == 401
    # Signed, but for a role that is not the api's: forbidden.
    for role in ("postgres", "thermocline_ingest", "thermocline_authenticator", None):
        status, _ = gql.post(q, tok=token(role=role))
        assert status == 403, role
    assert gql.post(None, raw=b"{not json", tok=token())[0] == 400
    # Each was audited with its status; the refused ones as the server's role.
    got = audited(gql.tc, f"id > {first} AND status IN ('400', '401', '403')",
                  lambda rows: len(rows) >= 12)
    statuses = [r[4] for r in got]
    assert statuses.count("401") == 7 and statuses.count("403") == 4 and statuses.count("400") == 1
    assert {r[1] for r in got} == {"thermocline_authenticator", "thermocline_viewer"}


def test_injection_in_arguments_changes_and_leaks_nothing(gql):
    before = snapshot(gql.tc, audit=False)
    first = gql.tc.sql(f'SELECT coalesce(max(id), 0) FROM "{gql.tc.audit_schema}".events')[0][0]
    tok = token("thermocline_viewer", ("berlin",))
    f, t = window(30 * 86400)
    seen = json.dumps
    leaked = []
    for value in INJECTION:
        for variables in ({"d": value, "from": f, "to": t}, {"d": "d-berlin-1", "from": f, "to": t, "r": value}):
            status, body = gql.post(READINGS_Q, variables, tok)
            assert status in (200, 400), (status, body)
            leaked.append(seen(body))
        for q, v in (('query($t: String!) { fleet(tag: $t, from: "2000-01-01T00:00:00Z",'
                      ' to: "2100-01-01T00:00:00Z") { nodes { tagValue devices } } }', {"t": value}),
                     ('query($s: String!) { allDevices(filter: {site: {equalTo: $s}}) { nodes { deviceId } } }',
                      {"s": value}),
                     ('query($s: String!) { allDevices(condition: {deviceId: $s}) { nodes { deviceId } } }',
                      {"s": value})):
            status, body = gql.post(q, v, tok)
            assert status in (200, 400), (status, body)
            leaked.append(seen(body))
    text = "".join(leaked)
    assert "d-munich-1" not in text and "munich" not in text and "d-nosite" not in text
    assert str(LAT["d-berlin-1"]) not in text
    assert snapshot(gql.tc, audit=False) == before
    # Every one of them is in the audit log, a NUL byte in its variables included.
    sent = len(leaked)
    got = audited(gql.tc, f"id > {first}", lambda rows: len(rows) >= sent)
    assert len(got) == sent


def test_requests_are_audited(gql):
    gql.data("query Probe { allDevices { nodes { deviceId } } allLatests { totalCount } }",
             tok=token("thermocline_analyst", ("munich",)))
    got = audited(gql.tc, "target = 'Probe'", lambda rows: len(rows) >= 1)
    assert len(got) == 1
    actor, role, sub, _, status, ms = got[0]
    assert actor.startswith("tc_it_") and role == "thermocline_analyst" and sub == "it-thermocline_analyst"
    assert status == "200" and ms > 0
    # The rows it returned: the one device of munich.
    assert gql.tc.sql(f"SELECT row_count FROM \"{gql.tc.audit_schema}\".events WHERE target = 'Probe'") == [(1,)]
    assert gql.tc.cmd("audit", "verify").returncode == 0


@pytest.mark.parametrize("role", [None, *ROLES])
def test_schemathesis_graphql_no_server_errors(gql, role, tmp_path):
    # Dead letters are refused by design (FORBIDDEN) below the operator, and so are the online
    # features below the analyst (test_refused_by_role): schemathesis counts any error of a
    # GraphQL answer as the server's, so those fields are left out of those roles' runs.
    refused = {"thermocline_viewer": "([Dd]eadLetter(s|ById)?|[Ff]eaturesOnline\\w*)$",
               "thermocline_analyst": "[Dd]eadLetter(s|ById)?$"}.get(role)
    exclude = ["--exclude-name-regex", refused] if refused else []
    if role:
        target, auth = [gql.url], ["-H", f"Authorization: Bearer {token(role, ('berlin',), ttl=3600)}"]
    else:
        # Without a token every query is refused (401), introspection too: the schema is read
        # with an admin's token, and every generated query is sent without one.
        from graphql import build_client_schema, get_introspection_query, print_schema
        before = gql.tc.sql(f'SELECT coalesce(max(id), 0) FROM "{gql.tc.audit_schema}".events')[0][0]
        intro = gql.data(get_introspection_query(), tok=token("thermocline_admin", "*"))
        # Its audit row is written after the answer: wait for it, so the mark below is past it.
        audited(gql.tc, f"id > {before}", lambda rows: len(rows) >= 1)
        (tmp_path / "schema.graphql").write_text(print_schema(build_client_schema(intro)))
        target, auth = [str(tmp_path / "schema.graphql"), "--url", gql.url], []
    first = gql.tc.sql(f'SELECT coalesce(max(id), 0) FROM "{gql.tc.audit_schema}".events')[0][0]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "schemathesis"), "run", *target, *exclude, *auth,
         "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", "6", "--seed", "1", "--workers", "2",
         "--phases", "examples,fuzzing", "--no-color", "--generation-database", "none",
         "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout.lower()
    # The queries reached the server, and without a token every one was refused.
    got = audited(gql.tc, f"id > {first}", lambda rows: len(rows) >= 20)
    assert len(got) >= 20
    if not role:
        assert {r[4] for r in got} == {"401"}, {r[4] for r in got}


def test_public_key_tokens(gql, tmp_path):
    """With a public key (ES256 here), tokens signed by its private key pass, and the HS256
    secret -- or the public key itself used as an HMAC secret -- does not."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "jwt.pub").write_bytes(pem)
    with login_role(gql.tc, "thermocline_authenticator", noinherit=True) as user:
        with serve(gql.tc, user, key_file=str(tmp_path / "jwt.pub")) as server:
            deadline = time.monotonic() + 60
            good = token("thermocline_analyst", "*", key=key, algorithm="ES256")
            status, body = server.post(DEVICES_Q, tok=good)
            while status != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                status, body = server.post(DEVICES_Q, tok=good)
            assert status == 200 and len(body["data"]["allDevices"]["nodes"]) == len(SITES), body
            assert server.post(DEVICES_Q, tok=token())[0] == 401
            # Algorithm confusion: HS256 with the public key as the HMAC secret (made by hand:
            # PyJWT itself refuses to).
            b64 = jwt.utils.base64url_encode
            signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(
                {"role": "thermocline_admin", "sites": "*", "exp": int(time.time()) + 600}).encode())
            confused = signing + b"." + b64(hmac.new(pem, signing, hashlib.sha256).digest())
            assert server.post(DEVICES_Q, tok=confused.decode())[0] == 401
            other = ec.generate_private_key(ec.SECP256R1())
            assert server.post(DEVICES_Q, tok=token(key=other, algorithm="ES256"))[0] == 401
