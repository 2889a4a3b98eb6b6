"""The curated SQL interface (schema api) over direct PostgreSQL connections: the roles `migrate`
creates, who sees which rows (sites from the JWT claims for a server's connection, from
api.site_access for a direct login), which columns are masked for whom, what is refused, an
SQL-injection corpus in every function parameter, and the audit log (append-only, hash-chained,
`thermocline audit verify`, the commands that record into it). The GraphQL path is
test_graphql.py; both use api_data's store."""

import json

import psycopg
import pytest

from api_data import LAT, LON, READINGS, ROLES, SITES, as_role, dsn_as, login_role, seed, visible

BERLIN = json.dumps({"sub": "alice", "sites": ["berlin"]})
ALL = json.dumps({"sub": "root", "sites": "*"})

# Strings an attacker would put in a parameter; every one must be taken as a value.
INJECTION = [
    "d-berlin-1' OR '1'='1",
    "d-berlin-1'; DROP TABLE readings; --",
    "x' UNION SELECT device_id, time, 'raw', 1, 1, 1, 1, 1, latitude, longitude FROM readings --",
    "'); SELECT pg_sleep(0); --",
    "\\'; DELETE FROM dead_letters; --",
    "$$; DROP SCHEMA public CASCADE; $$",
    "d-munich-1\x00",
    "site') OR true --",
    "*",
    "%",
    "1h' OR 'a'='a",
    "raw; SET ROLE thermocline_admin",
    "\"; RESET ROLE; --",
]


@pytest.fixture
def api(tc):
    tc.migrate()
    tc.hour = seed(tc)
    return tc


def rows(conn, query, params=None):
    return conn.execute(query, params).fetchall()


def devices_seen(conn, a):
    return {r[0] for r in rows(conn, f'SELECT device_id FROM "{a}".devices')}


def test_roles_are_created_nologin_and_nested(api):
    got = dict(api.sql("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'thermocline\\_%'"))
    for role in (*ROLES, "thermocline_ingest", "thermocline_authenticator"):
        assert got.get(role) is False, f"{role} missing or LOGIN: {got}"
    # Each role has the rights of the one before it.
    for lower, higher in zip(ROLES, ROLES[1:]):
        assert api.sql("SELECT pg_has_role(%s, %s, 'USAGE')", (higher, lower))[0][0]
        assert not api.sql("SELECT pg_has_role(%s, %s, 'USAGE')", (lower, higher))[0][0]
    # A server's login role gets nobody's rights by being an authenticator.
    assert not api.sql("SELECT rolinherit FROM pg_roles WHERE rolname = 'thermocline_authenticator'")[0][0]
    # migrate again: idempotent, and the api answers its version.
    api.migrate()
    assert api.sql(f'SELECT "{api.api_schema}".version()') == [("1.0",)]


@pytest.mark.parametrize("role", ROLES)
def test_rows_by_site_from_claims(api, role):
    a = api.api_schema
    for claims, sites in ((BERLIN, {"berlin"}), (ALL, None), (json.dumps({"sub": "x"}), set()),
                          (json.dumps({"sites": ["munich", "nowhere"]}), {"munich"}), ("not json", set())):
        want = visible(None if role == "thermocline_admin" else sites)
        with as_role(api, role, claims) as conn:
            assert devices_seen(conn, a) == want, (role, claims)
            assert {r[0] for r in rows(conn, f'SELECT device_id FROM "{a}".latest')} == want
            raw = rows(conn, f'SELECT device_id, count(*) FROM "{a}".readings_raw GROUP BY 1')
            assert dict(raw) == {d: READINGS for d in want}
            for view in ("readings_1m", "readings_1h", "quality"):
                assert {r[0] for r in rows(conn, f'SELECT device_id FROM "{a}".{view}')} == want, view
            assert {r[0] for r in rows(conn, f'SELECT device_id FROM "{a}".anomalies')} == want
            fleet = rows(conn, f"SELECT tag_value, devices FROM \"{a}\".fleet('site', now() - interval"
                         " '8 days', now())")
            per_site = {}
            for d in want:
                per_site[SITES[d]] = per_site.get(SITES[d], 0) + 1
            assert dict(fleet) == per_site
            # value: the same rows as the whole fleet's of that value, read for its devices only.
            for site in set(SITES.values()) - {None}:  # None: a device without the tag
                q = f"\"{a}\".fleet('site', now() - interval '8 days', now(), 'auto', %s) ORDER BY 2, 1"
                one = rows(conn, f"SELECT * FROM {q}", (site,))
                every = [r for r in rows(conn, f"SELECT * FROM {q.replace('%s', 'NULL')}") if r[0] == site]
                assert one == every and bool(one) == (site in per_site), (role, site)
            # The fleet's quality spans every site: only for who sees them all.
            n = rows(conn, f'SELECT count(*) FROM "{a}".quality_fleet')[0][0]
            assert n == (1 if want == set(SITES) else 0)
            # Counts of dead letters carry no device: every role.
            got = dict(rows(conn, f"SELECT * FROM \"{a}\".dead_letter_counts(now() - interval '1 day', now())"))
            assert got == {"malformed_json": 1, "out_of_range": 1}


@pytest.mark.parametrize("role,level", [("thermocline_viewer", "coarse"), ("thermocline_analyst", "exact"),
                                        ("thermocline_operator", "exact"), ("thermocline_admin", "exact")])
def test_personal_columns_masked_by_role(api, role, level):
    a = api.api_schema
    with as_role(api, role, ALL) as conn:
        def expect(dev, got_lat, got_lon):
            if level == "exact":
                assert (got_lat, got_lon) == (LAT[dev], LON[dev])
            else:
                assert (got_lat, got_lon) == (round(LAT[dev], 2), round(LON[dev], 2))
        for dev, lat, lon in rows(conn, f'SELECT device_id, latitude, longitude FROM "{a}".latest'):
            expect(dev, lat, lon)
        for dev, lat, lon in rows(conn, f'SELECT device_id, latitude, longitude FROM "{a}".readings_raw'):
            expect(dev, lat, lon)
        for dev, lat, lon in rows(conn, f'SELECT device_id, latitude_avg, latitude_max FROM "{a}".readings_1h'):
            assert lat == (LAT[dev] if level == "exact" else round(LAT[dev], 2))
            assert lon == lat
        got = rows(conn, f"SELECT device_id, latitude FROM \"{a}\".readings(%s, now() - interval '1 hour', now())",
                   ("d-berlin-1",))
        assert len(got) == READINGS
        assert {g[1] for g in got} == {LAT["d-berlin-1"] if level == "exact" else round(LAT["d-berlin-1"], 2)}
        # An anomaly of a personal metric is masked like the metric; others are not.
        for dev, metric, observed in rows(conn, f'SELECT device_id, metric, observed FROM "{a}".anomalies'):
            if metric == "latitude":
                assert observed == (LAT[dev] if level == "exact" else round(LAT[dev], 2))
            else:
                assert observed == 30.123456
        # Non-personal columns are exact for everyone.
        temps = {r[0] for r in rows(conn, f'SELECT temperature FROM "{a}".latest')}
        assert temps == {20.0, 21.0, 22.0, 23.0}


def test_viewer_sees_nothing_of_hidden_columns(api):
    api.cmd("migrate", extra=["api.personal_viewer=hide", "api.personal_columns=latitude, longitude,battery"])
    a = api.api_schema
    with as_role(api, "thermocline_viewer", ALL) as conn:
        got = rows(conn, f'SELECT latitude, longitude, temperature FROM "{a}".latest')
        assert got and all(g[0] is None and g[1] is None and g[2] is not None for g in got)
    with as_role(api, "thermocline_analyst", ALL) as conn:
        got = rows(conn, f'SELECT device_id, latitude FROM "{a}".latest')
        assert {g[1] for g in got} == set(LAT.values())
    # A column that is no reading's is refused, naming it.
    proc = api.cmd("migrate", extra=["api.personal_columns=latitude,email"], check=False)
    assert proc.returncode != 0 and '"email" is not a reading column' in proc.stderr


def test_refused(api):
    a, s, u = api.api_schema, api.schema, api.audit_schema
    refused = {
        "thermocline_viewer": [f'SELECT * FROM "{a}".dead_letters', f'SELECT * FROM "{s}".readings',
                               f'SELECT * FROM "{s}".latest_state', f'SELECT * FROM "{u}".events',
                               f'SELECT * FROM "{a}".site_access',
                               f"INSERT INTO \"{a}\".site_access VALUES ('x', '*')",
                               f"UPDATE \"{a}\".latest SET temperature = 0",
                               f'DELETE FROM "{a}".readings_raw',
                               f'INSERT INTO "{u}".events (at, actor, role, action, status, hash)'
                               " VALUES (now(), 'x', 'x', 'x', 'x', '\\x00')"],
        "thermocline_analyst": [f'SELECT * FROM "{a}".dead_letters', f'SELECT * FROM "{s}".readings'],
        "thermocline_operator": [f'SELECT * FROM "{u}".events', f'SELECT * FROM "{s}".dead_letters'],
        "thermocline_ingest": [f'SELECT * FROM "{a}".latest', f'SELECT * FROM "{a}".devices',
                               f"SELECT * FROM \"{a}\".readings('d-berlin-1', now() - interval '1 hour', now())",
                               f'SELECT * FROM "{s}".readings', f'SELECT * FROM "{u}".events'],
    }
    for role, statements in refused.items():
        for sql in statements:
            with as_role(api, role, ALL) as conn:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql)
    allowed = {
        "thermocline_operator": [f'SELECT count(*) FROM "{a}".dead_letters'],
        "thermocline_admin": [f'SELECT count(*) FROM "{u}".events', f'SELECT count(*) FROM "{a}".site_access'],
        "thermocline_ingest": [f"INSERT INTO \"{s}\".readings (time, device_id, kafka_partition, kafka_offset)"
                               " VALUES (now(), 'ingest-probe', 0, 99)",
                               f"INSERT INTO \"{s}\".dead_letters (received_at, reason, detail, stage, payload,"
                               " source_topic, source_partition, source_offset) VALUES (now(), 'r', 'd', 's',"
                               " '\\x00', 't', 0, 0)"],
    }
    for role, statements in allowed.items():
        for sql in statements:
            with as_role(api, role, ALL) as conn:
                conn.execute(sql)
    with as_role(api, "thermocline_operator", ALL) as conn:
        assert rows(conn, f'SELECT count(*) FROM "{a}".dead_letters')[0][0] == 3


def test_direct_login_uses_site_access_not_claims(api):
    a = api.api_schema
    with login_role(api, "thermocline_viewer") as user:
        with psycopg.connect(dsn_as(api, user), autocommit=True) as conn:
            assert devices_seen(conn, a) == set()
            # Claims a direct login sets itself are not believed.
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (ALL,))
            assert devices_seen(conn, a) == set()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SET ROLE thermocline_admin")
        api.sql(f'INSERT INTO "{a}".site_access VALUES (%s, %s)', (user, "munich"))
        with psycopg.connect(dsn_as(api, user), autocommit=True) as conn:
            assert devices_seen(conn, a) == {"d-munich-1"}
            lat = rows(conn, f'SELECT latitude FROM "{a}".latest')[0][0]
            assert lat == round(LAT["d-munich-1"], 2)
        api.sql(f'INSERT INTO "{a}".site_access VALUES (%s, %s)', (user, "*"))
        with psycopg.connect(dsn_as(api, user), autocommit=True) as conn:
            assert devices_seen(conn, a) == set(SITES)
    # A server's login role (NOINHERIT member of thermocline_authenticator) reads nothing itself,
    # and believes the claims once it has switched to a role.
    with login_role(api, "thermocline_authenticator", noinherit=True) as server:
        with psycopg.connect(dsn_as(api, server), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'SELECT * FROM "{a}".devices')
        with psycopg.connect(dsn_as(api, server), autocommit=True) as conn:
            conn.execute("SET ROLE thermocline_viewer")
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (BERLIN,))
            assert devices_seen(conn, a) == visible({"berlin"})


def test_readings_resolution(api):
    a = api.api_schema
    with as_role(api, "thermocline_analyst", ALL) as conn:
        def steps(since, resolution="auto"):
            return {r[0] for r in rows(conn, f"SELECT step FROM \"{a}\".readings('d-berlin-1',"
                                              f" now() - interval '{since}', now(), %s)", (resolution,))}
        assert steps("1 hour") == {"raw"}
        assert steps("3 days") == {"1m"}
        assert steps("20 days") == {"1h"}
        assert steps("20 days", "raw") == {"raw"}
        one = rows(conn, f"SELECT n, temperature, latitude FROM \"{a}\".readings('d-berlin-1',"
                   " now() - interval '20 days', now())")
        assert one == [(2, 20.0, LAT["d-berlin-1"])]
        for bad, state in (("5m", psycopg.errors.InvalidParameterValue),
                           ("RAW", psycopg.errors.InvalidParameterValue)):
            with pytest.raises(state, match="resolution must be one of"):
                conn.execute(f"SELECT * FROM \"{a}\".readings('d-berlin-1', now() - interval '1 hour',"
                             " now(), %s)", (bad,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="is before"):
            conn.execute(f"SELECT * FROM \"{a}\".readings('d-berlin-1', now(), now() - interval '1 hour')")
        # A missing bound is no range: nothing (the planner drops the branches before they run).
        assert rows(conn, f"SELECT * FROM \"{a}\".readings('d-berlin-1', NULL, now())") == []
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(f"SELECT * FROM \"{a}\".fleet('site', now() - interval '1 hour', now(), 'raw')")


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def test_hourly_reads_come_from_the_key_alone(api):
    """A device's month of hours is read from rollup_1h's key (which carries the columns the api
    reads), not a heap page a row: the rows of one device lie a page apart, as the closing writes
    an hour of every device at once (written so here: hour by hour). A site's week of closed hours
    is not read from rollup_1h at all but from rollup_tag_1h, a row an hour."""
    a, s = api.api_schema, api.schema
    api.sql(f'INSERT INTO "{s}".latest_state (device_id, time, tags, kafka_partition, kafka_offset)'
            " SELECT 'd-berlin-' || d, now(), '{\"site\": \"berlin\"}', 0, d"
            " FROM generate_series(10, 400) d")
    api.sql(f'INSERT INTO "{s}".rollup_1h (device_id, bucket, n, temperature_n, temperature_sum,'
            " temperature_min, temperature_max, latitude_n, latitude_sum)"
            " SELECT 'd-berlin-' || d, date_trunc('hour', now()) - h * interval '1 hour', 1, 1, 20,"
            " 20, 20, 1, 52.5 FROM generate_series(30, 24 * 30) h, generate_series(10, 400) d"
            " ORDER BY h, d")
    api.sql(f'VACUUM (ANALYZE) "{s}".rollup_1h, "{s}".rollup_tag_1h')
    month = f"SELECT * FROM \"{a}\".readings('d-berlin-17', now() - interval '30 days', now(), '1h')"
    week = f"SELECT * FROM \"{a}\".fleet('site', now() - interval '7 days', now(), '1h', 'berlin')"
    with as_role(api, "thermocline_analyst", ALL) as conn:
        def scans(query, relation):
            (doc,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}").fetchone()
            return [n for n in plan_nodes(doc[0]["Plan"]) if n.get("Relation Name") == relation
                    and n.get("Actual Loops", 0) > 0 and n.get("Actual Rows", 0) > 0], doc
        # Whether the planner prefers the key to a bitmap scan depends on how much of the table
        # VACUUM could mark all-visible, which another session's old snapshot can hold back; with
        # the bitmap and sequential scans out of the running, an index scan of the key is
        # index-only exactly when the key carries every column the call reads (the narrow key of
        # schema version 5 makes it a plain Index Scan, a heap page a row).
        conn.execute("SET enable_bitmapscan = off")
        conn.execute("SET enable_seqscan = off")
        found, doc = scans(month, "rollup_1h")
        assert found, doc
        for n in found:
            assert n["Node Type"] == "Index Only Scan", n
        conn.execute("RESET enable_bitmapscan")
        conn.execute("RESET enable_seqscan")
        n = rows(conn, f"SELECT count(*) FROM ({month}) m")[0][0]
        assert n >= 690
    # Every hour of the seed's store is closed: the week's rows come from rollup_tag_1h. fleet() is
    # PL/pgSQL (its plans kept per connection), so its statements' plans come from auto_explain.
    plans = []
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary))
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_analyze = on",
                        "SET auto_explain.log_format = json", "SET auto_explain.log_level = notice",
                        "SET ROLE thermocline_analyst"):
            conn.execute(setting)
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (ALL,))
        got = {r[1]: r[3] for r in rows(conn, week)}
    docs = [json.loads(p[p.index("{"):]) for p in plans if "{" in p]
    inner = [d["Plan"] for d in docs if "rollup_tag_1h" in json.dumps(d)]
    assert inner, plans
    nodes = [n for d in inner for n in plan_nodes(d) if n.get("Actual Loops", 0) > 0]
    assert not [n for n in nodes if n.get("Relation Name") == "rollup_1h" and n.get("Actual Rows", 0) > 0]
    tag_rows = sum(n["Actual Rows"] for n in nodes if n.get("Relation Name") == "rollup_tag_1h")
    assert 0 < tag_rows <= 2 * (24 * 7 + 1), tag_rows
    # And the answers are the rows: the site's hours of the 391 devices, the seed's hour of its two.
    assert len(got) >= 24 * 7 - 31 and set(got.values()) == {391, 2}, got


def test_fleet_is_never_compiled(api):
    """fleet()'s statements run without JIT: on a store of 50 M readings their generic plan's
    estimate passes jit_above_cost, and compiling it took 0.5-1 s of a 30 ms call (docs/api.md,
    "Performance"). With every JIT threshold at 0, a plain statement is compiled -- so the check
    below can fail -- and fleet()'s own statements are not."""
    a = api.api_schema
    week = f"SELECT * FROM \"{a}\".fleet('site', now() - interval '7 days', now(), '1h', 's0')"
    plans = []
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary))
        for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                        "SET auto_explain.log_nested_statements = on",
                        "SET auto_explain.log_analyze = on", "SET auto_explain.log_format = json",
                        "SET auto_explain.log_level = notice", "SET jit = on",
                        "SET jit_above_cost = 0", "SET jit_inline_above_cost = 0",
                        "SET jit_optimize_above_cost = 0", "SET ROLE thermocline_analyst"):
            conn.execute(setting)
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (ALL,))
        conn.execute("SELECT sum(x) FROM generate_series(1, 10) x").fetchall()
        if not any('"JIT"' in p for p in plans if "generate_series" in p):
            pytest.skip("this server has no JIT provider")
        plans.clear()
        conn.execute(week).fetchall()
    inner = [p for p in plans if "rollup_tag_1h" in p or "rollup_1h" in p]
    assert inner, plans
    assert not [p for p in inner if '"JIT"' in p], inner

def snapshot(api, audit=True):
    """What an injection could change: row counts of every table (of the audit log's too, unless
    the requests themselves are audited), and the objects that exist."""
    counts = {}
    for schema in (api.schema, api.api_schema, *([api.audit_schema] if audit else [])):
        for (table,) in api.sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)):
            counts[(schema, table)] = api.sql(f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
    objects = api.sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                      " WHERE n.nspname IN (%s, %s, %s, 'public')",
                      (api.schema, api.api_schema, api.audit_schema))[0][0]
    roles = api.sql("SELECT count(*) FROM pg_roles")[0][0]
    return counts, objects, roles


def test_injection_corpus_changes_and_leaks_nothing(api):
    a = api.api_schema
    before = snapshot(api)
    calls = [
        (f'SELECT * FROM "{a}".readings(%s, now() - interval \'1 hour\', now())', "device"),
        (f"SELECT * FROM \"{a}\".readings('d-berlin-1', now() - interval '1 hour', now(), %s)", "resolution"),
        (f"SELECT * FROM \"{a}\".readings('d-berlin-1', %s::timestamptz, now())", "from"),
        (f"SELECT * FROM \"{a}\".readings('d-berlin-1', now() - interval '1 hour', %s::timestamptz)", "to"),
        (f"SELECT * FROM \"{a}\".fleet(%s, now() - interval '8 days', now())", "tag"),
        (f"SELECT * FROM \"{a}\".fleet('site', now() - interval '8 days', now(), %s)", "resolution"),
        (f"SELECT * FROM \"{a}\".dead_letter_counts(%s::timestamptz, now())", "from"),
        (f'SELECT device_id FROM "{a}".devices WHERE site = %s', "site"),
    ]
    seen = set()
    for sql, what in calls:
        for value in INJECTION:
            with as_role(api, "thermocline_viewer", BERLIN) as conn:
                try:
                    got = rows(conn, sql, (value,))
                except psycopg.DataError as e:
                    # Refused as a value (class 22), or a NUL byte the client will not send.
                    assert (e.sqlstate or "").startswith("22") or "NUL" in str(e), (what, value, e)
                    continue
                for r in got:
                    for cell in r:
                        if isinstance(cell, str):
                            seen.add(cell)
                        # Coarse locations only: nothing exact leaks through a parameter.
                        if isinstance(cell, float) and cell in set(LAT.values()) | set(LON.values()):
                            pytest.fail(f"exact location leaked by {what}={value!r}: {r}")
    assert not seen & {"d-munich-1", "d-nosite", "munich"}, seen
    assert snapshot(api) == before


def test_audit_log_append_only_and_verified(api):
    u = api.audit_schema
    for role in ROLES:
        with as_role(api, role, json.dumps({"sub": f"user-{role}", "role": role})) as conn:
            conn.execute(f"SELECT \"{u}\".record('test.read', 'devices', %s::jsonb, 3, 'ok', 1.5)",
                         (json.dumps({"q": "it's \"quoted\"", "n": 1}),))
    events = api.sql(f'SELECT id, actor, role, claims->>\'sub\', action FROM "{u}".events ORDER BY id')
    assert [e[4] for e in events] == ["migrate"] + ["test.read"] * 4
    assert [e[2] for e in events[1:]] == list(ROLES)
    assert events[1][3] == "user-thermocline_viewer"
    ok = api.cmd("audit", "verify", "--json")
    assert json.loads(ok.stdout) == {"schema": u, "events": 5, "intact": True, "first_broken_id": None,
                                     "problem": None}
    # Even the owner cannot change or remove a row while the triggers are on.
    for sql in (f"UPDATE \"{u}\".events SET target = 'x'", f'DELETE FROM "{u}".events',
                f'TRUNCATE "{u}".events'):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            api.sql(sql)
    # A superuser who disables them can; verify names the row.
    victim = events[2][0]
    api.sql(f'ALTER TABLE "{u}".events DISABLE TRIGGER events_append_only;'
            f" UPDATE \"{u}\".events SET row_count = 0 WHERE id = {victim};"
            f' ALTER TABLE "{u}".events ENABLE TRIGGER events_append_only')
    bad = api.cmd("audit", "verify", check=False)
    assert bad.returncode == 1
    assert f"broken at event {victim}: its hash does not match its content" in bad.stdout
    # Recomputing the changed row's hash moves the break to the next row.
    api.sql(f'ALTER TABLE "{u}".events DISABLE TRIGGER events_append_only;'
            f' UPDATE "{u}".events e SET hash = sha256(coalesce(e.prev_hash, \'\\x\'::bytea) ||'
            f' convert_to("{u}".canonical(e), \'UTF8\')) WHERE id = {victim};'
            f' ALTER TABLE "{u}".events ENABLE TRIGGER events_append_only')
    bad = json.loads(api.cmd("audit", "verify", "--json", check=False).stdout)
    assert bad["first_broken_id"] == events[3][0] and "prev_hash" in bad["problem"]


def test_audit_log_removed_row_detected(api):
    u = api.audit_schema
    for i in range(3):
        api.sql(f"SELECT \"{u}\".record('test.n', %s)", (str(i),))
    ids = [r[0] for r in api.sql(f'SELECT id FROM "{u}".events ORDER BY id')]
    api.sql(f'ALTER TABLE "{u}".events DISABLE TRIGGER events_append_only;'
            f' DELETE FROM "{u}".events WHERE id = {ids[2]};'
            f' ALTER TABLE "{u}".events ENABLE TRIGGER events_append_only')
    bad = json.loads(api.cmd("audit", "verify", "--json", check=False).stdout)
    assert bad["intact"] is False and bad["first_broken_id"] == ids[3]


def test_commands_record_their_changes(api):
    u = api.audit_schema
    api.cmd("topics", "create")
    proc = api.cmd("dlq", "redrive", "--reason", "out_of_range")
    assert "redrove 1 dead letter" in proc.stdout
    # A dry run changes nothing and records nothing.
    api.cmd("dlq", "redrive", "--dry-run", "--again")
    # A day older than the retention age, in a partition of its own.
    api.sql(f'SET search_path TO "{api.schema}"; INSERT INTO readings (time, device_id, kafka_partition,'
            " kafka_offset) VALUES (now() - interval '3 days', 'old', 0, 1)")
    api.cmd("retention", "--no-require-lake", "--max-age", "86400")
    # The schema registry's changes, whichever path makes them.
    subject = f"audit-{api.topic}"
    api.sql("INSERT INTO registry.configs (subject, compatibility) VALUES (%s, 'FULL')", (subject,))
    api.sql("DELETE FROM registry.configs WHERE subject = %s", (subject,))
    got = api.sql(f"SELECT action, target, row_count, status, params FROM \"{u}\".events"
                  " WHERE action <> 'migrate' ORDER BY id")
    actions = [(g[0], g[1], g[2], g[3]) for g in got if not g[0].startswith("registry.") or g[1] == subject]
    assert actions[0] == ("dlq.redrive", api.topic, 1, "ok")
    assert got[0][4]["reason"] == "out_of_range"
    assert actions[1][0] == "retention" and actions[1][1] == api.schema and actions[1][3] == "ok"
    assert actions[1][2] >= 1
    assert actions[2:] == [("registry.configs.insert", subject, 1, "ok"),
                           ("registry.configs.delete", subject, 1, "ok")]
    assert api.cmd("audit", "verify").returncode == 0


def test_audit_failure_fails_the_command(api):
    api.sql(f'DROP SCHEMA "{api.audit_schema}" CASCADE')
    api.cmd("topics", "create")
    proc = api.cmd("dlq", "redrive", "--reason", "malformed_json", check=False)
    assert proc.returncode == 1
    assert "redrove 1 dead letter" in proc.stdout
    assert "the change was made but is not in the audit log" in proc.stderr
