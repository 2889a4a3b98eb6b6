"""What the REST API tests share: a `thermocline serve` on a free port over a schema of their own,
tokens for every role, a small HTTP client.

The API reads the `api` schema that `thermocline migrate` creates. These tests exercise the server
(authentication, parameters, cursors, formats, streaming, audit, how the request reaches
PostgreSQL as its role), so they run it over a small contract schema of their own with the same
names and shapes (CONTRACT below): its rows are known, each test module gets a fresh one, and a
view that depends on current_user shows that every request really runs as its caller's role.
"""

import base64
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import jwt
import psycopg
import pytest

from conftest import ROOT, Thermocline, _env

SECRET = "rest-test-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
ROLES = ["viewer", "analyst", "operator", "admin"]

# The contract the server reads, over a table of known rows. `devices` hides site s2 from
# thermocline_viewer, as a row-level policy would.
CONTRACT = """
CREATE SCHEMA {api}; CREATE SCHEMA {audit};
CREATE TABLE {audit}.events (id bigserial PRIMARY KEY, actor text, role text, action text,
  detail jsonb, rows bigint, at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION {audit}.record(a text, r text, act text, d jsonb, n bigint) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER AS
  $$ INSERT INTO {audit}.events (actor, role, action, detail, rows) VALUES (a, r, act, d, n)
     RETURNING id $$;
CREATE TABLE {api}.r (time timestamptz NOT NULL, device_id text NOT NULL,
  temperature double precision, humidity double precision, latitude double precision,
  tags jsonb);
INSERT INTO {api}.r SELECT timestamptz '2026-11-01T00:00:00Z' + (i || ' minutes')::interval,
  'dev-' || lpad((i % 25)::text, 2, '0'), 20 + (i % 17) * 0.5, CASE WHEN i % 11 = 0 THEN NULL
  ELSE 40 + i % 9 END, 48.123456, jsonb_build_object('site', 's' || (i % 25 % 3))
  FROM generate_series(0, 2999) i;
CREATE VIEW {api}.devices AS SELECT device_id, min(time) AS first_seen, max(time) AS last_seen,
  (array_agg(tags))[1] AS tags FROM {api}.r GROUP BY device_id
  HAVING current_user <> 'thermocline_viewer' OR (array_agg(tags))[1] ->> 'site' <> 's2';
CREATE VIEW {api}.latest AS SELECT DISTINCT ON (device_id) * FROM {api}.r
  ORDER BY device_id, time DESC;
CREATE FUNCTION {api}.readings(d text, f timestamptz, t timestamptz, res text)
  RETURNS TABLE ("time" timestamptz, device_id text, n bigint, temperature double precision,
                 humidity double precision)
  LANGUAGE sql STABLE AS
  $$ SELECT CASE res WHEN 'raw' THEN r.time WHEN '1m' THEN date_trunc('minute', r.time)
            ELSE date_trunc('hour', r.time) END, r.device_id, count(*), avg(r.temperature),
            avg(r.humidity)
     FROM {api}.r r WHERE r.device_id = d AND r.time >= f AND r.time < t GROUP BY 1, 2 $$;
CREATE FUNCTION {api}.fleet(k text, v text, f timestamptz, t timestamptz, res text)
  RETURNS TABLE ("time" timestamptz, devices bigint, n bigint, temperature_avg double precision)
  LANGUAGE sql STABLE AS
  $$ SELECT date_trunc(CASE res WHEN '1m' THEN 'minute' ELSE 'hour' END, r.time),
            count(DISTINCT r.device_id), count(*), avg(r.temperature)
     FROM {api}.r r WHERE r.tags ->> k = v AND r.time >= f AND r.time < t GROUP BY 1 $$;
CREATE TABLE {api}.dead_letters AS SELECT i::bigint AS id, 'reason-' || (i % 3) AS reason,
  timestamptz '2026-11-01T00:00:00Z' + (i || ' seconds')::interval AS received_at
  FROM generate_series(1, 40) i;
CREATE TABLE {api}.quality AS SELECT timestamptz '2026-11-01T00:00:00Z'
  + (i || ' minutes')::interval AS time, i AS readings, 0.01 * i AS invalid_ratio
  FROM generate_series(0, 99) i;
CREATE TABLE {api}.anomalies AS SELECT timestamptz '2026-11-01T00:00:00Z'
  + (i || ' minutes')::interval AS time, 'dev-0' || (i % 9) AS device_id, 'spike' AS kind
  FROM generate_series(0, 49) i;
CREATE FUNCTION {api}.request_redrive(ids bigint[]) RETURNS bigint LANGUAGE sql AS
  $$ SELECT count(*) FROM unnest(ids) $$;
GRANT USAGE ON SCHEMA {api} TO thermocline_viewer, thermocline_analyst, thermocline_operator,
  thermocline_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA {api} TO thermocline_viewer, thermocline_analyst,
  thermocline_operator, thermocline_admin;
"""

# The roles the server switches to (created by `migrate` in a real store; here if missing).
ROLE_SQL = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'thermocline_viewer') THEN
    CREATE ROLE thermocline_viewer NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'thermocline_analyst') THEN
    CREATE ROLE thermocline_analyst NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'thermocline_operator') THEN
    CREATE ROLE thermocline_operator NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'thermocline_admin') THEN
    CREATE ROLE thermocline_admin NOLOGIN; END IF;
END $$;
"""


def token(role="viewer", sub=None, exp_in=600, key=SECRET, alg="HS256", headers=None, **claims):
    payload = {"sub": sub or f"{role}-user", "role": role, **claims}
    if exp_in is not None:
        payload["exp"] = int(time.time()) + exp_in
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def ctype(self):
        return self.headers.get("Content-Type", "")


class Api:
    """One `thermocline serve` over a contract schema of its own."""

    def __init__(self, extra=(), files=None, tmp=None):
        self.t = Thermocline("rest")
        self.dsn = self.t.dsn
        suffix = uuid.uuid4().hex[:8]
        self.api_schema, self.audit_schema = f"rapi_{suffix}", f"raudit_{suffix}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(ROLE_SQL)
            conn.execute(CONTRACT.format(api=self.api_schema, audit=self.audit_schema))
        settings = [f"api.schema={self.api_schema}", f"audit.schema={self.audit_schema}",
                    "api.listen=127.0.0.1:0", f"api.jwt_secret={SECRET}", *extra]
        self.proc = self.t.spawn("serve", extra=settings)
        self.port = self._wait_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Keep reading the log, so a chatty server never blocks on a full pipe.
        self.log = []
        self._reader = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def _wait_port(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited {self.proc.returncode}")
                continue
            m = re.search(r"REST API listening on .* \(port (\d+)\)", line)
            if m:
                return int(m.group(1))
        raise AssertionError("serve did not start in 60 s")

    def request(self, path, tok=None, method="GET", headers=None, key=None):
        h = dict(headers or {})
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if key:
            h["X-API-Key"] = key
        req = urllib.request.Request(self.base + path, method=method, headers=h,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read())

    def get(self, path, role="viewer", **kw):
        return self.request(path, tok=token(role) if role else None, **kw)

    def sql(self, query, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def audit(self):
        return self.sql(f"SELECT actor, role, action, detail, rows FROM {self.audit_schema}.events"
                        " ORDER BY id")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        Thermocline.assert_clean("".join(self.log))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.api_schema} CASCADE")
            conn.execute(f"DROP SCHEMA IF EXISTS {self.audit_schema} CASCADE")
        return self.proc.returncode


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
