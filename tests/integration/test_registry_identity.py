"""Schema identity in the registry: the full text counts, as in Confluent's registry.

Two schemas that differ in logicalType, decimal precision or scale, a default, doc, aliases, a
field's order or a custom property are two schemas with two ids; schemas that differ only in
whitespace, the order of JSON object members, the spelling of a namespace or {"type": "int"} for
"int" are one (Confluent's canonical string, Avro's Schema.toString, drops those). normalize=true
stores the normalised text. The PostgreSQL store re-keys rows written under the old identity (the
Parsing Canonical Form) without changing any id or text, so a schema that used to be merged into
an older id gets an id of its own at its next registration.
"""

import copy
import hashlib
import json

import psycopg
import pytest

from conftest import _env
from test_registry import Registry, call, pg_schema, registry, schema_body  # noqa: F401 (fixtures)

BASE = {
    "type": "record", "name": "Reading", "namespace": "io.thermocline",
    "fields": [
        {"name": "device_id", "type": "string"},
        {"name": "t", "type": "long"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                   "scale": 2}},
        {"name": "mode", "type": {"type": "enum", "name": "Mode", "symbols": ["A", "B"]}},
    ],
}


def variant(change):
    s = copy.deepcopy(BASE)
    change(s)
    return s


def field(s, name):
    return next(f for f in s["fields"] if f["name"] == name)


# Each differs from BASE in one attribute: every one must get an id of its own.
DISTINCT = {
    "logicalType": variant(lambda s: field(s, "t").update(
        type={"type": "long", "logicalType": "timestamp-millis"})),
    "precision": variant(lambda s: field(s, "price")["type"].update(precision=12)),
    "scale": variant(lambda s: field(s, "price")["type"].update(scale=4)),
    "default": variant(lambda s: field(s, "t").update(default=0)),
    "record doc": variant(lambda s: s.update(doc="a reading")),
    "field doc": variant(lambda s: field(s, "t").update(doc="when")),
    "field aliases": variant(lambda s: field(s, "t").update(aliases=["time"])),
    "record aliases": variant(lambda s: s.update(aliases=["OldReading"])),
    "field order": variant(lambda s: field(s, "t").update(order="descending")),
    "custom property": variant(lambda s: s.update({"owner": "team-a"})),
    "type property": variant(lambda s: field(s, "t").update(type={"type": "long", "unit": "ms"})),
    "enum default": variant(lambda s: field(s, "mode")["type"].update(default="A")),
    "enum doc": variant(lambda s: field(s, "mode")["type"].update(doc="how")),
    "namespace": variant(lambda s: s.update(namespace="io.other")),
}

# Each is BASE written differently: every one must get BASE's id.
SAME = {
    "whitespace": json.dumps(BASE, indent=3),
    "member order": json.dumps({"fields": [dict(reversed(list(f.items()))) for f in BASE["fields"]],
                                "namespace": "io.thermocline", "name": "Reading",
                                "type": "record"}),
    "dotted name": json.dumps(variant(lambda s: (s.update(name="io.thermocline.Reading"),
                                                 s.pop("namespace")))),
    "primitive as object": json.dumps(variant(lambda s: field(s, "device_id").update(
        type={"type": "string"}))),
    "default order": json.dumps(variant(lambda s: field(s, "t").update(order="ascending"))),
}


def register(url, subject, schema, query=""):
    status, _, body = call("POST", f"{url}/subjects/{subject}/versions{query}", schema_body(schema))
    assert status == 200, body
    return body["id"]


def test_identity_table(registry):
    u = registry.url
    base_id = register(u, "base", BASE)
    ids = {"base": base_id}
    for name, schema in DISTINCT.items():
        ids[name] = register(u, "d-" + name.replace(" ", "-"), schema)
        # The id serves the text registered with it, attribute included.
        assert call("GET", f"{u}/schemas/ids/{ids[name]}")[2] == {"schema": json.dumps(schema)}
    assert len(set(ids.values())) == len(ids), ids
    for name, text in SAME.items():
        assert register(u, "s-" + name.replace(" ", "-"), text) == base_id, name
        status, _, body = call("POST", f"{u}/subjects/base", schema_body(text))
        assert status == 200 and (body["id"], body["version"]) == (base_id, 1), name
    # The first text is the one kept.
    assert call("GET", f"{u}/schemas/ids/{base_id}")[2] == {"schema": json.dumps(BASE)}


def test_normalize(registry):
    """normalize=true registers (and looks up) the normalised text: names in full."""
    u = registry.url
    a = {"type": "record", "name": "R", "namespace": "n",
         "fields": [{"name": "x", "type": {"type": "enum", "name": "E", "symbols": ["A"]}},
                    {"name": "y", "type": "E"}]}
    b = {"type": "record", "name": "n.R",
         "fields": [{"type": {"symbols": ["A"], "name": "n.E", "type": "enum"}, "name": "x"},
                    {"name": "y", "type": "n.E"}]}
    ida = register(u, "norm", a, "?normalize=true")
    assert register(u, "norm2", json.dumps(b, indent=1), "?normalize=true") == ida
    text = call("GET", f"{u}/schemas/ids/{ida}")[2]["schema"]
    assert json.loads(text) == {
        "fields": [{"name": "x", "type": {"name": "n.E", "symbols": ["A"], "type": "enum"}},
                   {"name": "y", "type": "n.E"}],
        "name": "n.R", "type": "record"}
    status, _, body = call("POST", f"{u}/subjects/norm?normalize=true", schema_body(b))
    assert status == 200 and body["id"] == ida


def test_logical_type_default_and_second_subject(registry):
    """The cases that used to be merged: a logicalType, a default-only step, a second subject."""
    u = registry.url
    plain = {"type": "record", "name": "t", "fields": [{"name": "ts", "type": "long"}]}
    timed = {"type": "record", "name": "t",
             "fields": [{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    id1 = register(u, "merged", plain)
    id2 = register(u, "merged", timed)
    assert id2 != id1
    assert call("GET", f"{u}/subjects/merged/versions")[2] == [1, 2]
    assert register(u, "other", timed) == id2
    assert json.loads(call("GET", f"{u}/schemas/ids/{id2}")[2]["schema"]) == timed

    # FORWARD: the latest version must read the new one. Adding a default to "c" is a version of
    # its own, and it is what lets the next step drop "c".
    call("PUT", f"{u}/config/evolve", json.dumps({"compatibility": "FORWARD"}))
    v1 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"},
                                                    {"name": "c", "type": "int"}]}
    v2 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"},
                                                    {"name": "c", "type": "int", "default": 0}]}
    v3 = {"type": "record", "name": "E", "fields": [{"name": "a", "type": "int"}]}
    register(u, "evolve", v1)
    register(u, "evolve", v2)
    assert call("GET", f"{u}/subjects/evolve/versions")[2] == [1, 2]
    register(u, "evolve", v3)
    assert call("GET", f"{u}/subjects/evolve/versions")[2] == [1, 2, 3]


def pcf(schema):
    """Avro's Parsing Canonical Form of the simple records used below (what the old identity was)."""
    return json.dumps({"name": schema["name"], "type": "record",
                       "fields": [{"name": f["name"], "type": f["type"] if isinstance(f["type"], str)
                                   else f["type"]["type"]} for f in schema["fields"]]},
                      separators=(",", ":"))


def test_migration_splits_merged_ids_without_changing_any(pg_schema, tmp_path):  # noqa: F811
    """The old state, set up by hand: rows keyed by the Parsing Canonical Form, and a second
    subject whose version was merged into the first text's id. After the migration every id keeps
    its text and its versions; the text that was merged gets an id of its own when registered."""
    plain = {"type": "record", "name": "t", "fields": [{"name": "ts", "type": "long"}]}
    timed = {"type": "record", "name": "t",
             "fields": [{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    other = {"type": "record", "name": "u", "fields": [{"name": "x", "type": "string"}]}
    reg = Registry(pg_schema, tmp_path).start()  # creates the tables
    reg.stop()
    dsn = _env("THERMOCLINE_PG_DSN")
    with psycopg.connect(dsn, autocommit=True) as conn:
        s = pg_schema
        # Back to the old tables: no references, metadata, rules, form or modes.
        conn.execute(f"ALTER TABLE {s}.schemas DROP COLUMN refs, DROP COLUMN metadata,"
                     " DROP COLUMN rule_set, DROP COLUMN form")
        conn.execute(f"DROP TABLE {s}.modes")
        ids = []
        for text in (plain, other):
            canon = pcf(text)
            ids.append(conn.execute(
                f"INSERT INTO {s}.schemas (fingerprint, canonical, original)"
                " VALUES (sha256(convert_to(%s, 'UTF8')), %s, %s) RETURNING id",
                (canon, canon, json.dumps(text))).fetchone()[0])
        id_plain, id_other = ids
        conn.execute(f"INSERT INTO {s}.subject_versions (subject, version, schema_id) VALUES"
                     " ('a', 1, %s), ('b', 1, %s), ('c', 1, %s)", (id_plain, id_plain, id_other))
    reg = Registry(pg_schema, tmp_path, name="migrated").start()
    try:
        u = reg.url
        # Ids, texts and versions as they were.
        assert call("GET", f"{u}/schemas/ids/{id_plain}")[2] == {"schema": json.dumps(plain)}
        assert call("GET", f"{u}/schemas/ids/{id_other}")[2] == {"schema": json.dumps(other)}
        for subject, sid in (("a", id_plain), ("b", id_plain), ("c", id_other)):
            body = call("GET", f"{u}/subjects/{subject}/versions/1")[2]
            assert (body["id"], body["version"]) == (sid, 1)
        # The same text again: the same id, nothing new.
        assert register(u, "a", plain) == id_plain
        assert register(u, "c", other) == id_other
        assert call("GET", f"{u}/subjects/a/versions")[2] == [1]
        # What "b" meant (the logical type) is a schema of its own now.
        id_timed = register(u, "b", timed)
        assert id_timed not in (id_plain, id_other)
        assert call("GET", f"{u}/subjects/b/versions")[2] == [1, 2]
        assert json.loads(call("GET", f"{u}/schemas/ids/{id_timed}")[2]["schema"]) == timed
    finally:
        reg.stop()
        reg.kill()
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT id, form, fingerprint, canonical FROM {pg_schema}.schemas"
                            " ORDER BY id").fetchall()
    assert [r[1] for r in rows] == [2, 2, 2]
    for _, _, fp, canon in rows:
        assert bytes(fp) == hashlib.sha256(canon.encode()).digest()
    # Restarting migrates nothing more and changes nothing.
    reg = Registry(pg_schema, tmp_path, name="again").start()
    try:
        assert register(reg.url, "b", timed) == id_timed
    finally:
        reg.stop()
        reg.kill()


def test_migration_with_an_older_process_alongside(pg_schema, tmp_path):  # noqa: F811
    """An older registry process, still running next to a newer one, inserted a row keyed by the
    canonical form for a text the newer one already holds: the migration keeps both ids readable
    and does not fail on the duplicate key."""
    text = {"type": "record", "name": "v", "fields": [{"name": "x", "type": "int"}]}
    reg = Registry(pg_schema, tmp_path).start()
    try:
        new_id = register(reg.url, "new", text)
    finally:
        reg.stop()
        reg.kill()
    dsn = _env("THERMOCLINE_PG_DSN")
    with psycopg.connect(dsn, autocommit=True) as conn:
        canon = pcf(text)
        old_id = conn.execute(
            f"INSERT INTO {pg_schema}.schemas (fingerprint, canonical, original, form)"
            " VALUES (sha256(convert_to(%s, 'UTF8')), %s, %s, 1) RETURNING id",
            (canon, canon, json.dumps(text))).fetchone()[0]
        conn.execute(f"INSERT INTO {pg_schema}.subject_versions (subject, version, schema_id)"
                     " VALUES ('old', 1, %s)", (old_id,))
    reg = Registry(pg_schema, tmp_path, name="after").start()
    try:
        for sid in (new_id, old_id):
            assert call("GET", f"{reg.url}/schemas/ids/{sid}")[2] == {"schema": json.dumps(text)}
        assert register(reg.url, "third", text) == new_id
        assert call("GET", f"{reg.url}/subjects/old/versions/1")[2]["id"] == old_id
    finally:
        reg.stop()
        reg.kill()
    with psycopg.connect(dsn, autocommit=True) as conn:
        forms = dict(conn.execute(f"SELECT id, form FROM {pg_schema}.schemas").fetchall())
    assert forms == {new_id: 2, old_id: 3}


@pytest.mark.parametrize("accept,want_status,want_ct", [
    (None, 200, "application/vnd.schemaregistry.v1+json"),
    ("*/*", 200, "application/vnd.schemaregistry.v1+json"),
    ("application/json", 200, "application/json"),
    ("application/vnd.schemaregistry+json", 200, "application/vnd.schemaregistry+json"),
    ("application/vnd.schemaregistry.v1+json", 200, "application/vnd.schemaregistry.v1+json"),
    ("application/*", 200, "application/vnd.schemaregistry.v1+json"),
    ("text/html, application/json;q=0.9", 200, "application/json"),
    ("application/json;q=1, application/vnd.schemaregistry.v1+json;q=0.1", 200,
     "application/json"),
    ("text/html", 406, "application/vnd.schemaregistry.v1+json"),
    ("application/xml", 406, "application/vnd.schemaregistry.v1+json"),
])
def test_accept_negotiation(registry, accept, want_status, want_ct):
    status, ct, body = call("GET", registry.url + "/subjects", accept=accept)
    assert (status, ct) == (want_status, want_ct), body
    if want_status == 406:
        assert body["error_code"] == 406 and body["message"]
    else:
        assert body == []
