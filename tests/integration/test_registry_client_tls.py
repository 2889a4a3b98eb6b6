"""The pipeline's schema cache over HTTPS with credentials: `thermocline registry` serves TLS with
client certificates required (http.tls.client_ca_file) and every request authenticated, reads
included (registry.auth.read_open=false). The pipeline trusts the test's CA (registry.tls.ca_file),
presents its client certificate (registry.tls.cert_file, key_file) and sends a bearer token
(registry.bearer_token_file) or HTTP Basic (registry.user_info_file); it decodes Avro readings
through the registry value for value. A CA that did not sign the registry's certificate, and
missing credentials, hold the readings (the registry is unusable, as if unreachable: retried, never
a dead letter) with a message that names the setting to fix; a run with the right settings
afterwards stores every reading exactly once.
No secret is in any output.
"""

import json
import signal
import time
from decimal import Decimal

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pki import Pki
from test_avro_pipeline import V1, V2
from test_registry import pg_schema  # noqa: F401 (a fixture)
from test_security_http import PASSWORD, TOKEN, pki, private_file, secure  # noqa: F401 (fixtures)


def produce(tc, client, schema, first, count, now_ms):
    """count Avro readings of schema (co2 in V2's); returns their temperature and co2 sums."""
    ctx = SerializationContext(tc.topic, MessageField.VALUE)
    ser = AvroSerializer(client, json.dumps(schema))
    p = Producer({"bootstrap.servers": tc.brokers})
    t_sum = co2_sum = Decimal(0)
    for i in range(first, first + count):
        r = {"device_id": f"tls-{i % 20:02d}", "timestamp": now_ms - i * 1000,
             "temperature": 10 + (i % 40) / 4, "humidity": 41.5, "battery": i % 100,
             "tags": {"site": "lab"}}
        if schema is V2:
            r["co2"] = 400.25 + i
            co2_sum += Decimal(repr(r["co2"]))
        t_sum += Decimal(repr(r["temperature"]))
        p.produce(tc.topic, value=ser(r, ctx), key=r["device_id"].encode())
    assert p.flush(30) == 0
    return t_sum, co2_sum


def held(tc, settings, expect, timeout=120):
    """Run the pipeline with settings until its log shows every string of expect, then stop it;
    returns the log. Nothing may be stored meanwhile."""
    proc = tc.spawn("run", extra=settings)
    seen = ""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(e in seen for e in expect):
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    seen += out + err
    tc.assert_clean(seen)
    assert all(e in seen for e in expect), (expect, seen[-4000:])
    assert tc.sql("SELECT count(*) FROM readings") == [(0,)]
    assert tc.sql("SELECT count(*) FROM dead_letters") == [(0,)]
    return seen


def test_pipeline_decodes_avro_through_an_https_registry(tc, secure, pki, tmp_path):  # noqa: F811
    crt, key = pki.issue("server", "127.0.0.1")
    client_crt, client_key = pki.issue("pipeline", "thermocline-pipeline", server=False)
    users = private_file(tmp_path / "users", f"ci:{PASSWORD}\n")
    tokens = private_file(tmp_path / "tokens", f"{TOKEN}\n")
    reg = secure([f"http.tls.cert_file={crt}", f"http.tls.key_file={key}",
                  f"http.tls.client_ca_file={pki.ca_file}", f"registry.auth.users_file={users}",
                  f"registry.auth.tokens_file={tokens}", "registry.auth.read_open=false"],
                 ca_file=pki.ca_file, client=(client_crt, client_key))
    client = SchemaRegistryClient({"url": reg.url, "basic.auth.user.info": f"ci:{PASSWORD}",
                                   "ssl.ca.location": pki.ca_file,
                                   "ssl.certificate.location": client_crt,
                                   "ssl.key.location": client_key, "max.retries": 0})
    reg.clients.append(client)
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    now_ms = int(time.time() * 1000)
    t1, _ = produce(tc, client, V1, 0, 200, now_ms)

    token_file = private_file(tmp_path / "token", f"{TOKEN}\n")
    info_file = private_file(tmp_path / "info", f"ci:{PASSWORD}\n")
    tls = [f"registry.url={reg.url}", f"registry.tls.cert_file={client_crt}",
           f"registry.tls.key_file={client_key}"]
    outputs = []
    # A CA that did not sign the registry's certificate: refused, said so, nothing decoded.
    other = Pki(tmp_path / "other", name="other")
    outputs.append(held(tc, [*tls, f"registry.tls.ca_file={other.ca_file}",
                             f"registry.bearer_token_file={token_file}"],
                        ["was refused", "registry.tls.ca_file", "issuer"]))
    # The right CA, no credentials: the registry's 401, held likewise (never a dead letter).
    outputs.append(held(tc, [*tls, f"registry.tls.ca_file={pki.ca_file}"],
                        ["HTTP 401 for schema", "registry.user_info_file or registry.bearer_token_file"]))
    # The right CA and a bearer token: every reading, value for value.
    run = tc.run(idle=2, extra=(*tls, f"registry.tls.ca_file={pki.ca_file}",
                                f"registry.bearer_token_file={token_file}"))
    outputs.append(run.stdout + run.stderr)
    (n, t_sum) = tc.sql("SELECT count(*), sum(temperature::numeric) FROM readings")[0]
    assert n == 200 and Decimal(t_sum) == t1
    # Version 2 (a new metric) with HTTP Basic instead: the new id is fetched, the column made.
    _, co2 = produce(tc, client, V2, 200, 100, now_ms)
    run = tc.run(idle=2, extra=(*tls, f"registry.tls.ca_file={pki.ca_file}",
                                f"registry.user_info_file={info_file}"))
    outputs.append(run.stdout + run.stderr)
    (n, n_co2, co2_sum, dupes) = tc.sql(
        "SELECT count(*), count(co2), sum(co2::numeric), count(*) - count(DISTINCT"
        " (kafka_partition, kafka_offset)) FROM readings")[0]
    assert (n, n_co2, dupes) == (300, 100, 0) and Decimal(co2_sum) == co2
    assert tc.sql("SELECT count(*) FROM dead_letters") == [(0,)]
    for text in outputs:
        assert PASSWORD not in text and TOKEN not in text, text[-3000:]
