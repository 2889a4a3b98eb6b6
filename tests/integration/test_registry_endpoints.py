"""The registry's endpoints beyond subjects and versions, with Confluent's status and error codes:
GET /schemas, modes, application/octet-stream bodies, schema references (register, look up,
compatibility across them, referencedby, format=resolved, deletes refused while referenced), and
data-contract metadata and rule sets on versions (GET /subjects/{s}/metadata)."""

import json

from test_registry import call, pg_schema, registry, schema_body, sr_client  # noqa: F401

CT = "application/vnd.schemaregistry.v1+json"


def rec(name, *fields, ns="io.thermocline"):
    return {"type": "record", "name": name, "namespace": ns,
            "fields": [{"name": n, "type": t} for n, t in fields]}


def post(url, path, body, ct=CT):
    return call("POST", url + path, body, ct)


def test_list_schemas(registry):
    u = registry.url
    a1 = rec("A", ("x", "int"))
    a2 = dict(a1, fields=a1["fields"] + [{"name": "y", "type": ["null", "int"], "default": None}])
    b1 = rec("B", ("z", "string"))
    ids = [post(u, "/subjects/app-a/versions", schema_body(s))[2]["id"] for s in (a1, a2)]
    idb = post(u, "/subjects/app-b/versions", schema_body(b1))[2]["id"]
    post(u, "/subjects/zzz/versions", schema_body(b1))
    assert call("DELETE", u + "/subjects/zzz")[0] == 200

    status, ct, body = call("GET", u + "/schemas")
    assert (status, ct) == (200, CT)
    assert [(s["subject"], s["version"], s["id"]) for s in body] == [
        ("app-a", 1, ids[0]), ("app-a", 2, ids[1]), ("app-b", 1, idb)]
    assert json.loads(body[0]["schema"]) == a1
    body = call("GET", u + "/schemas?subjectPrefix=app-a")[2]
    assert [(s["subject"], s["version"]) for s in body] == [("app-a", 1), ("app-a", 2)]
    body = call("GET", u + "/schemas?latestOnly=true")[2]
    assert [(s["subject"], s["version"]) for s in body] == [("app-a", 2), ("app-b", 1)]
    body = call("GET", u + "/schemas?deleted=true")[2]
    assert [(s["subject"], s["version"]) for s in body][-1] == ("zzz", 1)
    body = call("GET", u + "/schemas?offset=1&limit=1")[2]
    assert [(s["subject"], s["version"]) for s in body] == [("app-a", 2)]
    assert call("GET", u + "/schemas?subjectPrefix=nothing")[2] == []


def test_modes(registry):
    u = registry.url
    s1 = rec("M", ("x", "int"))
    assert call("GET", u + "/mode") == (200, CT, {"mode": "READWRITE"})
    status, _, body = call("GET", u + "/mode/m")
    assert (status, body["error_code"]) == (404, 40401)
    assert call("GET", u + "/mode/m?defaultToGlobal=true")[2] == {"mode": "READWRITE"}
    assert call("PUT", u + "/mode/m", json.dumps({"mode": "READONLY"}))[2] == {"mode": "READONLY"}
    assert call("GET", u + "/mode/m")[2] == {"mode": "READONLY"}
    status, _, body = post(u, "/subjects/m/versions", schema_body(s1))
    assert (status, body["error_code"]) == (422, 42205), body
    # Other subjects are not affected; reads of m still work.
    assert post(u, "/subjects/n/versions", schema_body(s1))[0] == 200
    assert call("GET", u + "/subjects/m/versions")[0] == 404  # no versions: 40401, not refused
    for bad in ({"mode": "SIDEWAYS"}, {"mode": "IMPORT"}, {}):
        status, _, body = call("PUT", u + "/mode/m", json.dumps(bad))
        assert (status, body["error_code"]) == (422, 42204), (bad, body)
    assert call("DELETE", u + "/mode/m")[2] == {"mode": "READONLY"}
    status, _, body = call("DELETE", u + "/mode/m")
    assert (status, body["error_code"]) == (404, 40401)
    assert post(u, "/subjects/m/versions", schema_body(s1))[0] == 200
    # The global mode applies to every subject without one of its own.
    assert call("PUT", u + "/mode", json.dumps({"mode": "READONLY_OVERRIDE"}))[2] == {
        "mode": "READONLY_OVERRIDE"}
    status, _, body = call("DELETE", u + "/subjects/n")
    assert (status, body["error_code"]) == (422, 42205)
    assert call("PUT", u + "/mode/n", json.dumps({"mode": "READWRITE"}))[0] == 200
    assert call("DELETE", u + "/subjects/n")[0] == 200
    assert call("DELETE", u + "/mode")[2] == {"mode": "READONLY_OVERRIDE"}
    assert call("GET", u + "/mode")[2] == {"mode": "READWRITE"}


def test_octet_stream_and_ids_that_are_not_numbers(registry):
    u = registry.url
    status, ct, body = post(u, "/subjects/o/versions", schema_body(rec("O", ("x", "int"))),
                            "application/octet-stream")
    assert (status, ct) == (200, CT) and body["id"] > 0
    for path in ("/schemas/ids/abc", "/schemas/ids/1x", "/schemas/ids/-1/schema",
                 "/schemas/ids/abc/versions", "/schemas/ids/abc/referencedby"):
        status, ct, body = call("GET", u + path)
        assert (status, ct, body["error_code"]) == (404, CT, 404), path
    status, _, body = call("GET", u + "/schemas/ids/99999")
    assert (status, body["error_code"]) == (404, 40403)


LOCATION = rec("Location", ("lat", "double"), ("lon", "double"), ns="io.shared")
LOCATION2 = dict(LOCATION, fields=LOCATION["fields"] + [
    {"name": "alt", "type": ["null", "double"], "default": None}])
SITE = {"type": "record", "name": "Site", "namespace": "io.shared",
        "fields": [{"name": "name", "type": "string"}, {"name": "where", "type": "Location"}]}
READING = {"type": "record", "name": "Reading", "namespace": "io.thermocline",
           "fields": [{"name": "device_id", "type": "string"},
                      {"name": "site", "type": "io.shared.Site"},
                      {"name": "last", "type": ["null", "io.shared.Location"], "default": None}]}


def test_references(registry):
    u = registry.url
    loc_ref = [{"name": "io.shared.Location", "subject": "location", "version": 1}]
    id_loc = post(u, "/subjects/location/versions", schema_body(LOCATION))[2]["id"]
    status, _, body = post(u, "/subjects/site/versions", schema_body(SITE, references=loc_ref))
    assert status == 200, body
    id_site = body["id"]
    refs = [{"name": "io.shared.Site", "subject": "site", "version": 1}] + loc_ref
    status, _, body = post(u, "/subjects/reading/versions", schema_body(READING, references=refs))
    assert status == 200, body
    id_reading = body["id"]
    # Without its references the same text does not parse: an unknown name.
    status, _, body = post(u, "/subjects/reading2/versions", schema_body(READING))
    assert (status, body["error_code"]) == (422, 42201)
    # A reference to a version that does not exist.
    status, _, body = post(u, "/subjects/reading2/versions", schema_body(
        READING, references=[{"name": "io.shared.Site", "subject": "site", "version": 9}]))
    assert (status, body["error_code"]) == (422, 42201) and "no version 9" in body["message"]

    # Answers carry the references; format=resolved inlines them.
    body = call("GET", u + "/subjects/reading/versions/1")[2]
    assert body["id"] == id_reading and body["references"] == refs
    assert json.loads(body["schema"]) == READING
    assert call("GET", u + f"/schemas/ids/{id_reading}")[2]["references"] == refs
    resolved = json.loads(call("GET", u + f"/schemas/ids/{id_reading}?format=resolved")[2]["schema"])
    site = resolved["fields"][1]["type"]
    assert site["name"] == "io.shared.Site" and site["fields"][1]["type"]["name"] == "io.shared.Location"
    assert resolved["fields"][2]["type"] == ["null", "io.shared.Location"]
    # Identity includes the references: the same text with another reference is another id;
    # the same text and references is the same id; a lookup finds it.
    assert post(u, "/subjects/reading/versions", schema_body(READING, references=refs))[2]["id"] == id_reading
    found = post(u, "/subjects/reading", schema_body(READING, references=refs))[2]
    assert (found["id"], found["version"]) == (id_reading, 1)

    # referencedby, by version and by id.
    assert call("GET", u + "/subjects/location/versions/1/referencedby") == (
        200, CT, [id_site, id_reading])
    assert call("GET", u + "/subjects/site/versions/latest/referencedby")[2] == [id_reading]
    assert call("GET", u + "/subjects/reading/versions/1/referencedby")[2] == []
    assert call("GET", u + f"/schemas/ids/{id_loc}/referencedby")[2] == [id_site, id_reading]
    status, _, body = call("GET", u + "/subjects/nobody/versions/1/referencedby")
    assert (status, body["error_code"]) == (404, 40401)

    # Compatibility across references: Reading v2 moves to Location v2 (a new optional field,
    # BACKWARD compatible); a Location of another shape is refused, with the reference resolved.
    id_loc2 = post(u, "/subjects/location/versions", schema_body(LOCATION2))[2]["id"]
    assert id_loc2 != id_loc
    post(u, "/subjects/site/versions", schema_body(
        SITE, references=[{"name": "io.shared.Location", "subject": "location", "version": 2}]))
    refs2 = [{"name": "io.shared.Site", "subject": "site", "version": 2},
             {"name": "io.shared.Location", "subject": "location", "version": 2}]
    status, _, body = post(u, "/compatibility/subjects/reading/versions/latest",
                           schema_body(READING, references=refs2))
    assert (status, body) == (200, {"is_compatible": True})
    assert post(u, "/subjects/location-bad/versions",
                schema_body(rec("Location", ("lat", "string"), ns="io.shared")))[0] == 200
    post(u, "/subjects/site-bad/versions", schema_body(
        SITE, references=[{"name": "io.shared.Location", "subject": "location-bad", "version": 1}]))
    bad = [{"name": "io.shared.Site", "subject": "site-bad", "version": 1}, loc_ref[0]]
    status, _, body = post(u, "/compatibility/subjects/reading/versions/latest?verbose=true",
                           schema_body(READING, references=bad))
    assert status == 200 and body["is_compatible"] is False and "lat" in json.dumps(body["messages"])
    status, _, body = post(u, "/subjects/reading/versions", schema_body(READING, references=bad))
    assert (status, body["error_code"]) == (409, 409)

    # A referenced version cannot be deleted (42206); once nothing references it, it can.
    for path in ("/subjects/location/versions/1", "/subjects/location"):
        status, _, body = call("DELETE", u + path)
        assert (status, body["error_code"]) == (422, 42206), (path, body)
    assert call("DELETE", u + "/subjects/location-bad/versions/1")[2]["error_code"] == 42206
    assert call("DELETE", u + "/subjects/site-bad/versions/1")[0] == 200
    assert call("DELETE", u + "/subjects/site-bad/versions/1?permanent=true")[0] == 200
    assert call("DELETE", u + "/subjects/location-bad/versions/1")[0] == 200


def test_references_with_the_confluent_client(registry):
    from confluent_kafka.schema_registry import Schema, SchemaReference
    client = sr_client(registry)
    client.register_schema("location", Schema(json.dumps(LOCATION), "AVRO"))
    client.register_schema("site", Schema(json.dumps(SITE), "AVRO", [
        SchemaReference("io.shared.Location", "location", 1)]))
    refs = [SchemaReference("io.shared.Site", "site", 1),
            SchemaReference("io.shared.Location", "location", 1)]
    sid = client.register_schema("reading", Schema(json.dumps(READING), "AVRO", refs))
    got = client.get_schema(sid)
    assert [(r.name, r.subject, r.version) for r in got.references] == [
        (r.name, r.subject, r.version) for r in refs]
    assert client.get_referenced_by("location", 1) == [client.get_latest_version("site").schema_id, sid]


def test_metadata_and_rule_sets(registry):
    from confluent_kafka.schema_registry import Metadata, MetadataProperties, Schema
    u = registry.url
    s1 = rec("Meta", ("x", "int"))
    meta1 = {"properties": {"owner": "team-a", "application.major.version": "1"}}
    rules = {"domainRules": [{"name": "checkX", "kind": "CONDITION", "type": "CEL",
                              "mode": "WRITE", "expr": "message.x > 0"}]}
    status, _, body = post(u, "/subjects/meta/versions",
                           schema_body(s1, metadata=meta1, ruleSet=rules))
    assert status == 200, body
    id1 = body["id"]
    # Metadata is part of the identity: the same text without it, or with other metadata, is
    # another schema (and another version).
    id_plain = post(u, "/subjects/meta/versions", schema_body(s1))[2]["id"]
    meta2 = {"properties": {"owner": "team-b", "application.major.version": "2"}}
    id2 = post(u, "/subjects/meta/versions", schema_body(s1, metadata=meta2))[2]["id"]
    assert len({id1, id_plain, id2}) == 3
    body = call("GET", u + "/subjects/meta/versions/1")[2]
    assert (body["metadata"], body["ruleSet"]) == (meta1, rules)
    assert "metadata" not in call("GET", u + "/subjects/meta/versions/2")[2]
    assert call("GET", u + f"/schemas/ids/{id1}")[2]["metadata"] == meta1

    # Latest with metadata, raw and through the client.
    status, _, body = call("GET", u + "/subjects/meta/metadata?key=owner&value=team-a")
    assert (status, body["version"], body["id"]) == (200, 1, id1)
    body = call("GET", u + "/subjects/meta/metadata?key=application.major.version&value=2")[2]
    assert body["version"] == 3 and body["metadata"] == meta2
    status, _, body = call("GET", u + "/subjects/meta/metadata?key=owner&value=nobody")
    assert (status, body["error_code"]) == (404, 40403)
    status, _, body = call("GET", u + "/subjects/nobody/metadata?key=owner&value=team-a")
    assert (status, body["error_code"]) == (404, 40401)
    client = sr_client(registry)
    got = client.get_latest_with_metadata("meta", {"owner": "team-b"})
    assert (got.version, got.schema_id) == (3, id2)
    # The client registers with metadata too.
    sid = client.register_schema("meta2", Schema(json.dumps(s1), "AVRO", metadata=Metadata(
        None, MetadataProperties({"owner": "team-c"}), None)))
    assert call("GET", u + f"/schemas/ids/{sid}")[2]["metadata"] == {"properties": {"owner": "team-c"}}


def test_reference_to_the_latest_version_is_pinned(registry):
    """A reference to version -1 (the latest) names the version it resolved to: stored and
    answered so, and part of the identity, so the same text after a new referenced version is a
    new schema that uses the new version."""
    u = registry.url
    latest = [{"name": "io.shared.Location", "subject": "location", "version": -1}]
    post(u, "/subjects/location/versions", schema_body(LOCATION))
    status, _, body = post(u, "/subjects/site/versions", schema_body(SITE, references=latest))
    assert status == 200, body
    id1 = body["id"]
    assert call("GET", u + "/subjects/site/versions/1")[2]["references"] == [
        {"name": "io.shared.Location", "subject": "location", "version": 1}]
    assert call("GET", u + "/subjects/location/versions/1/referencedby")[2] == [id1]
    post(u, "/subjects/location/versions", schema_body(LOCATION2))
    id2 = post(u, "/subjects/site/versions", schema_body(SITE, references=latest))[2]["id"]
    assert id2 != id1
    assert call("GET", u + f"/schemas/ids/{id2}")[2]["references"][0]["version"] == 2
    resolved = json.loads(call("GET", u + f"/schemas/ids/{id2}?format=resolved")[2]["schema"])
    assert [f["name"] for f in resolved["fields"][1]["type"]["fields"]] == ["lat", "lon", "alt"]
