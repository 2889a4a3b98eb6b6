"""What the REST API tests share: a `thermocline serve` on a free port over a store of its own
(`migrate`, then known rows written straight into the store's tables), tokens for every role, a
small HTTP client.

The store: the days of November 2026 as partitions (the readings are dated there, so every
range in the tests is fixed), DEVICES devices on three sites (s0, s1, s2 by device number), one reading a minute
from START for READINGS minutes, their per-minute and per-hour rollups computed from them, 40 dead
letters, per-minute quality figures and anomalies; enough rows for pagination and streams in
several pieces, few enough to be written in a second.
"""

import base64
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request

import jwt
import psycopg

from conftest import Thermocline

SECRET = "rest-test-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
ROLES = ["viewer", "analyst", "operator", "admin"]
DEVICES = 25
READINGS = 3000
START = "2026-11-01T00:00:00Z"

SEED = """
SELECT count(tc_ddl_add_partition(d::date))
FROM generate_series(date '2026-10-31', date '2026-11-21', interval '1 day') d;
INSERT INTO readings (time, device_id, temperature, humidity, latitude, longitude, tags,
  kafka_partition, kafka_offset, schema_version)
SELECT timestamptz '{start}' + (i || ' minutes')::interval, 'dev-' || lpad((i % 25)::text, 2, '0'),
  20 + (i % 17) * 0.5, CASE WHEN i % 11 = 0 THEN NULL ELSE 40 + i % 9 END, 48.123456, 11.654321,
  jsonb_build_object('site', 's' || (i % 25 % 3)), 0, i, 1
FROM generate_series(0, {n} - 1) i;
INSERT INTO latest_state (device_id, time, temperature, humidity, latitude, longitude, tags,
  kafka_partition, kafka_offset)
SELECT DISTINCT ON (device_id) device_id, time, temperature, humidity, latitude, longitude, tags,
  kafka_partition, kafka_offset FROM readings ORDER BY device_id, time DESC;
INSERT INTO rollup_1m (device_id, bucket, n, temperature_n, temperature_sum, temperature_min,
  temperature_max, humidity_n, humidity_sum, humidity_min, humidity_max)
SELECT device_id, date_trunc('minute', time), count(*), count(temperature), sum(temperature),
  min(temperature), max(temperature), count(humidity), coalesce(sum(humidity), 0), min(humidity), max(humidity)
FROM readings GROUP BY 1, 2;
INSERT INTO rollup_1h (device_id, bucket, n, temperature_n, temperature_sum, temperature_min,
  temperature_max, humidity_n, humidity_sum, humidity_min, humidity_max)
SELECT device_id, date_trunc('hour', time), count(*), count(temperature), sum(temperature),
  min(temperature), max(temperature), count(humidity), coalesce(sum(humidity), 0), min(humidity), max(humidity)
FROM readings GROUP BY 1, 2;
UPDATE rollup_state SET materialized_1m = 'infinity', materialized_1h = 'infinity';
INSERT INTO dead_letters (received_at, reason, detail, stage, payload, source_topic,
  source_partition, source_offset)
SELECT timestamptz '{start}' + (i || ' seconds')::interval, 'reason-' || (i % 3), 'x', 'validate',
  convert_to('{{"device_id":"dev-' || i || '"}}', 'UTF8'), '{topic}', 0, i
FROM generate_series(1, 40) i;
INSERT INTO quality_1m (device_id, bucket, readings, temperature_n)
SELECT device_id, date_trunc('minute', time), 1, 1 FROM readings WHERE time < timestamptz '{start}'
  + interval '100 minutes';
INSERT INTO anomalies (device_id, metric, kind, start_time, observed, expected)
SELECT 'dev-0' || (i % 9), 'temperature', 'spike', timestamptz '{start}' + (i || ' minutes')::interval,
  30, 20 FROM generate_series(0, 49) i;
"""


def token(role="viewer", sub=None, exp_in=600, key=SECRET, alg="HS256", headers=None, sites="*",
          **claims):
    payload = {"sub": sub or f"{role}-user", "role": role, "sites": sites, **claims}
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
    """One `thermocline serve` over a store of its own."""

    def __init__(self, extra=(), sql=()):
        self.t = Thermocline("rest")
        self.dsn = self.t.dsn
        self.api_schema, self.audit_schema = self.t.api_schema, self.t.audit_schema
        self.t.migrate()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.t.schema}"')
            conn.execute(SEED.format(start=START, n=READINGS, topic=self.t.topic))
            for statement in sql:  # the test's own, before the server starts
                conn.execute(statement)
        settings = ["api.listen=127.0.0.1:0", f"api.jwt_secret={SECRET}", *extra]
        self.early = []  # the log up to the line that names the port
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
            self.early.append(line)
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
        """(subject, role, target, params, row_count, status) of every API request, in order."""
        return self.sql(f'SELECT claims->>\'sub\', role, target, params, row_count, status'
                        f' FROM "{self.audit_schema}".events WHERE action = \'api.request\' ORDER BY id')

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
        self.t.drop()
        return self.proc.returncode


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
