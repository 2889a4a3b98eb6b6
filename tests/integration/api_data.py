"""A small, exactly known store for the api tests (test_api.py, test_graphql.py): three devices on
two sites and one without a site, written straight into the store's tables after `migrate`, so
every test knows which rows each caller must see and what every masked value must be."""

import contextlib
import uuid

import psycopg

# device -> site (None: no site tag)
SITES = {"d-berlin-1": "berlin", "d-berlin-2": "berlin", "d-munich-1": "munich", "d-nosite": None}
LAT = {"d-berlin-1": 52.520008, "d-berlin-2": 52.516275, "d-munich-1": 48.137154, "d-nosite": 1.234567}
LON = {"d-berlin-1": 13.404954, "d-berlin-2": 13.377704, "d-munich-1": 11.576124, "d-nosite": 7.654321}
# Raw readings per device, one a minute ending 10 minutes ago.
READINGS = 5
ROLES = ("thermocline_viewer", "thermocline_analyst", "thermocline_operator", "thermocline_admin")


def visible(sites):
    """The devices a caller with these sites sees (None: every site)."""
    if sites is None:
        return set(SITES)
    return {d for d, s in SITES.items() if s is not None and s in sites}


def seed(tc):
    """Fill tc's schema; returns the hour bucket the rollups use."""
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        hour = conn.execute("SELECT date_trunc('hour', now() - interval '10 minutes')").fetchone()[0]
        for i, (dev, site) in enumerate(SITES.items()):
            tags = '{"site": "%s", "model": "m%d"}' % (site, i % 2) if site else '{"model": "m0"}'
            for k in range(READINGS):
                conn.execute(
                    "INSERT INTO readings (time, device_id, temperature, humidity, latitude, longitude,"
                    " tags, kafka_partition, kafka_offset, schema_version) VALUES"
                    " (now() - interval '10 minutes' - %s * interval '1 minute', %s, %s, 40, %s, %s,"
                    " %s::jsonb, 0, %s, 2)",
                    (k, dev, 20.0 + i + k, LAT[dev], LON[dev], tags, i * 100 + k))
            conn.execute(
                "INSERT INTO latest_state (device_id, time, temperature, humidity, latitude, longitude,"
                " tags, kafka_partition, kafka_offset) VALUES (%s, now() - interval '10 minutes', %s,"
                " 40, %s, %s, %s::jsonb, 0, %s)",
                (dev, 20.0 + i, LAT[dev], LON[dev], tags, i * 100))
            for table, bucket in (("rollup_1m", "date_trunc('minute', now() - interval '10 minutes')"),
                                  ("rollup_1h", "%s")):
                conn.execute(
                    f"INSERT INTO {table} (device_id, bucket, n, temperature_n, temperature_sum,"
                    " temperature_min, temperature_max, latitude_n, latitude_sum, latitude_min,"
                    f" latitude_max) VALUES (%s, {bucket}, 2, 2, %s, %s, %s, 2, %s, %s, %s)",
                    (dev, *([hour] if bucket == "%s" else []), 2 * (20.0 + i), 19.0 + i, 21.0 + i,
                     2 * LAT[dev], LAT[dev], LAT[dev]))
            conn.execute("INSERT INTO quality_1m (device_id, bucket, readings, temperature_n)"
                         " VALUES (%s, %s, 60, 59)", (dev, hour))
            conn.execute("INSERT INTO anomalies (device_id, metric, kind, start_time, observed, expected)"
                         " VALUES (%s, 'latitude', 'spike', %s, %s, %s)", (dev, hour, LAT[dev], LAT[dev] + 1))
            conn.execute("INSERT INTO anomalies (device_id, metric, kind, start_time, observed, expected)"
                         " VALUES (%s, 'temperature', 'drift', %s, 30.123456, 20.123456)", (dev, hour))
        # The rollup rows above are the tables' own: every bucket closed, none computed.
        conn.execute("UPDATE rollup_state SET materialized_1m = 'infinity',"
                     " materialized_1h = 'infinity'")
        conn.execute("INSERT INTO quality_fleet_1m (bucket, readings, devices) VALUES (%s, 240, 4)", (hour,))
        for reason in ("out_of_range", "malformed_json"):
            conn.execute(
                "INSERT INTO dead_letters (received_at, reason, detail, stage, payload, source_topic,"
                " source_partition, source_offset) VALUES (now() - interval '5 minutes', %s, 'x',"
                " 'validate', %s, %s, 0, 1)",
                (reason, b'{"device_id":"d-berlin-1","latitude":52.520008}', tc.topic))
    return hour


@contextlib.contextmanager
def as_role(tc, role, claims=None):
    """A connection of the test's superuser that has done SET ROLE role (and set the claims):
    what a server does per request. The superuser counts as a member of every role, so its
    claims are believed -- as a server's login role's are."""
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        if role:
            conn.execute(f"SET ROLE {role}")
        if claims is not None:
            conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        yield conn


@contextlib.contextmanager
def login_role(tc, member_of, noinherit=False):
    """A throw-away login role, member of member_of (a direct BI-tool-style connection)."""
    name = f"tc_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN {'NOINHERIT' if noinherit else ''} IN ROLE {member_of}")
    try:
        yield name
    finally:
        with psycopg.connect(tc.dsn, autocommit=True) as conn:
            conn.execute(f'DELETE FROM "{tc.api_schema}".site_access WHERE grantee = %s', (name,))
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def dsn_as(tc, user):
    return f"{tc.dsn} user={user}"
