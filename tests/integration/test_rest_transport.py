"""`thermocline serve` takes the http.* transport settings every server of the process takes
(docs/security.md): with http.tls.* it speaks HTTPS only, and one client address holds at most
http.per_ip_connections connections. Until this test, serve built its HTTP options itself and
ignored both: it answered plain HTTP whatever http.tls.* said."""

import http.client
import socket
import ssl
import time

import pytest

from pki import Pki
from rest_api import Api


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def test_serve_speaks_https_only_with_http_tls(pki):
    crt, key = pki.issue("server", "127.0.0.1")
    api = Api(extra=[f"http.tls.cert_file={crt}", f"http.tls.key_file={key}"])
    try:
        ctx = ssl.create_default_context(cafile=pki.ca_file)
        conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=ctx, timeout=30)
        conn.request("GET", "/v1/openapi.json")
        resp = conn.getresponse()
        assert resp.status == 200 and b'"openapi"' in resp.read()
        conn.close()
        # Plain HTTP on the same port gets no answer.
        plain = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/v1/openapi.json")
            plain.getresponse().read()
        plain.close()
        # Nor does a client that does not trust the certificate.
        untrusting = http.client.HTTPSConnection("127.0.0.1", api.port, timeout=30,
                                                 context=ssl.create_default_context())
        with pytest.raises(ssl.SSLError):
            untrusting.request("GET", "/v1/openapi.json")
        untrusting.close()
    finally:
        api.close()


def test_one_address_holds_at_most_per_ip_connections():
    api = Api(extra=["http.per_ip_connections=2"])
    held = []
    try:
        for _ in range(2):  # two connections held open, each after one answer
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            conn.request("GET", "/v1/openapi.json")
            assert conn.getresponse().read()
            held.append(conn)
        third = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError, socket.timeout)):
            third.request("GET", "/v1/openapi.json")
            third.getresponse().read()
        third.close()
        held.pop().close()
        # One let go: a new connection is served again (the server may take a moment to see it).
        for attempt in range(50):
            again = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            try:
                again.request("GET", "/v1/openapi.json")
                assert again.getresponse().status == 200
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt == 49:
                    raise
                time.sleep(0.1)
            finally:
                again.close()
    finally:
        for conn in held:
            conn.close()
        api.close()
