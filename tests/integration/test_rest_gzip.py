"""Responses in gzip for the clients that accept it (src/api/http_gzip.h; docs/api.md,
"Compression"): the bytes a client decodes are the bytes an identity request gets, whole answers
and streams alike; the kept answer of every device's latest reading is compressed once, not once
a request; Parquet and short bodies go as they are; `gzip;q=0` and `http.gzip=false` get identity.
The gzip is decoded by Python's zlib, never by anything of ours."""

import gzip
import http.client
import io
import zlib

import pyarrow.parquet as pq
import pytest

from rest_api import Api, token
from test_rest_coalesce import metrics

DEV = "dev-03"
DAY = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z"


@pytest.fixture(scope="module")
def api():
    a = Api()
    yield a
    a.close()


def fetch(api, path, accept_encoding=None, role="viewer", read=None, tok=None):
    """(status, headers, raw body bytes as sent) of one request on a connection of its own, with
    tok or a new token of role (none when role is None)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    tok = tok or (token(role) if role else None)
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    if accept_encoding is not None:
        headers["Accept-Encoding"] = accept_encoding
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read() if read is None else read(resp)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def test_whole_and_streamed_answers_decode_to_the_identity_bytes(api):
    for path in ("/v1/devices?limit=100",                       # a whole JSON answer
                 f"/v1/devices/{DEV}/readings?{DAY}&format=csv",    # streamed
                 f"/v1/devices/{DEV}/readings?{DAY}&format=ndjson",
                 "/v1/dead-letters?format=csv"):
        status, plain_h, plain = fetch(api, path, role="operator")
        assert status == 200 and "content-encoding" not in plain_h, path
        assert plain_h.get("vary") == "Accept-Encoding", path
        assert len(plain) > 1400, (path, len(plain))
        status, h, body = fetch(api, path, "gzip, deflate, br", role="operator")
        assert status == 200 and h.get("content-encoding") == "gzip", (path, h)
        assert h.get("vary") == "Accept-Encoding" and h["content-type"] == plain_h["content-type"]
        assert body[:3] == b"\x1f\x8b\x08"
        assert gzip.decompress(body) == plain, path
        assert len(body) * 3 < len(plain), (path, len(body), len(plain))


def test_a_stream_is_flushed_as_it_goes(api):
    """The first bytes a gzip client reads of a long stream decode to rows already: it is
    compressed as it goes, not held for the end (that every piece is flushed is
    tests/unit/test_http_gzip.c's)."""
    api.sql(f'INSERT INTO "{api.t.schema}".readings (time, device_id, temperature, tags,'
            " kafka_partition, kafka_offset, schema_version) SELECT timestamptz '2026-11-12T00:00:00Z'"
            " + (i * 4 || ' seconds')::interval, 'dev-07', i, '{\"site\": \"s1\"}', 2, i, 1"
            " FROM generate_series(1, 20000) i")
    path = "/v1/devices/dev-07/readings?from=2026-11-12T00:00:00Z&to=2026-11-13T00:00:00Z&format=csv&resolution=raw"
    status, h, first = fetch(api, path, "gzip", role="admin", read=lambda r: r.read1(65536))
    assert status == 200 and h["content-encoding"] == "gzip" and h.get("transfer-encoding") == "chunked"
    rows = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(first).decode().splitlines()
    assert rows[0].startswith("device_id,") and len(rows) > 100
    status, _, whole = fetch(api, path, "gzip", role="admin")
    lines = gzip.decompress(whole).decode().splitlines()
    assert len(lines) == 20001 and lines[1:3] == rows[1:3]


def test_the_kept_answer_is_compressed_once(api):
    path = "/v1/latest?format=ndjson"
    tok = token("viewer", sub="gzip-kept")  # one token: the claims are part of the answer's key
    _, _, plain = fetch(api, path, tok=tok)
    before = metrics(api)
    got = [fetch(api, path, "gzip", tok=tok) for _ in range(3)]
    after = metrics(api)
    assert after["thermocline_api_answers_reused_total"] - before["thermocline_api_answers_reused_total"] == 3
    bodies = {body for _, _, body in got}
    assert len(bodies) == 1 and all(h["content-encoding"] == "gzip" for _, h, _ in got)
    assert gzip.decompress(bodies.pop()) == plain
    # The kept answer holds its gzip form beside it (counted in the bytes held), made once.
    assert after["thermocline_api_coalesce_held_bytes"] > len(plain)


def test_what_goes_as_it_is(api):
    # Refused by weight, or not accepted.
    for enc in ("gzip;q=0", "br", "identity", "gzip;q=2"):
        status, h, body = fetch(api, f"/v1/devices/{DEV}/readings?{DAY}&format=csv", enc)
        assert status == 200 and "content-encoding" not in h and body.startswith(b"device_id,"), enc
    # Parquet is compressed already; no Vary either (its bytes never depend on the header).
    status, h, body = fetch(api, f"/v1/devices/{DEV}/readings?{DAY}&format=parquet", "gzip")
    assert status == 200 and "content-encoding" not in h and "vary" not in h
    assert pq.read_table(io.BytesIO(body)).num_rows > 0
    # A short answer.
    status, h, body = fetch(api, f"/v1/devices/{DEV}/latest", "gzip")
    assert status == 200 and "content-encoding" not in h and body.startswith(b"{")
    # /metrics of the same server is text: compressed for a scraper that asks (Prometheus does)
    # once it is long enough.
    _, _, plain = fetch(api, "/metrics", role=None)
    status, h, body = fetch(api, "/metrics", "gzip", role=None)
    assert status == 200 and h.get("content-encoding") == ("gzip" if len(plain) >= 1400 else None)
    assert b"thermocline_api_statements_total" in (gzip.decompress(body) if len(plain) >= 1400 else body)


def test_http_gzip_false_answers_identity():
    a = Api(extra=["http.gzip=false"])
    try:
        status, h, body = fetch(a, "/v1/devices?limit=100", "gzip")
        assert status == 200 and "content-encoding" not in h and "vary" not in h
        assert body.startswith(b"{")
    finally:
        a.close()
