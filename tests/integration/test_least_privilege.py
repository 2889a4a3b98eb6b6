"""The pipeline as the least-privilege ingest role (docs/security.md, "The pipeline's role").

`migrate` runs as the owner of the schema (postgres.owner_dsn); `run` connects with a DSN whose
session runs as thermocline_ingest (libpq's options='-c role=thermocline_ingest' on the plaintext
dev services, a login of the role itself in secure mode: test_security_pipeline.py). The ingest
role may write what the pipeline writes and change the store's shape only through the owner's
SECURITY DEFINER functions (src/store/ddl.c): a partition, a metric column, the rollups' columns.
Here: the pipeline's results as the ingest role are the owner's, partitions and columns it needed
were made by the functions (owned by the owner), and what the role may not do is refused with
PostgreSQL's reason -- reading readings, deleting, dropping, DDL of its own, the audit log, the api
schema, and the functions called with injected identifiers.
"""

import json
import time

import psycopg
import pytest
from confluent_kafka import Producer

from conftest import Thermocline, tag_of
from test_evolution import test_new_metrics_reach_the_plain_rollups_and_views as evolution
from test_operations import run_procedure
from test_pipeline import assert_store_matches

INGEST = "thermocline_ingest"


def as_ingest(dsn):
    return f"{dsn} options='-c role={INGEST}'"


class IngestThermocline(Thermocline):
    """Migrates as the owner (the test's superuser DSN) and runs every other command as the
    ingest role."""

    def settings(self, extra=()):
        return super().settings([f"postgres.owner_dsn={self.dsn}",
                                 f"postgres.dsn={as_ingest(self.dsn)}", *extra])

    def ingest_sql(self, query, params=None):
        with psycopg.connect(as_ingest(self.dsn), autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None


@pytest.fixture
def itc(request):
    t = IngestThermocline(tag_of(request))
    yield t
    t.drop()


def partitions(tc):
    return dict(tc.sql(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass"))


def test_pipeline_as_ingest_role_exactly_once(itc):
    """The plaintext end-to-end assertions with the pipeline as thermocline_ingest; the partitions
    it needed beyond migrate's (two more days ahead) were made by tc_ddl_add_partition, as the
    owner."""
    itc.migrate()
    owner = itc.sql("SELECT current_user")[0][0]
    before = partitions(itc)
    summary = itc.simulate("--devices", "200", "--count", "5000", "--invalid-ratio", "0.02",
                           "--seed", "21")
    proc = itc.run(extra=("postgres.partition_days_ahead=4",))
    exp = itc.oracle().expect()
    assert exp["total"] == 5000 and exp["valid"] == summary["valid"]
    assert_store_matches(itc, exp)
    after = partitions(itc)
    made = set(after) - set(before)
    assert len(made) == 2, (sorted(before), sorted(after))
    assert {after[p] for p in made} == {owner}
    assert "permission denied" not in proc.stderr


def test_schema_evolution_as_ingest_role(itc):
    """test_evolution's plain-mode test, whole, with the pipeline as the ingest role: new metrics
    become columns of readings, of both rollups and of their views (tc_ddl_add_metric_columns,
    tc_ddl_add_rollup_columns), and every bucket is exact."""
    evolution(itc)
    owners = itc.sql("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relname IN"
                     " ('readings', 'rollup_1m', 'readings_1m') AND relnamespace ="
                     " current_schema()::regnamespace")
    assert owners == [(itc.sql("SELECT current_user")[0][0],)]


# What the ingest role may not do (each refused with SQLSTATE class 42 and the reason), also run
# over TLS + scram by test_security_pipeline.py: reading readings, dropping, its own DDL, a function
# called with injected identifiers.
INGEST_REFUSED = [
    ("SELECT count(*) FROM readings", None, "permission denied for table readings"),
    ("DELETE FROM readings", None, "permission denied for table readings"),
    ("DROP TABLE readings", None, "must be owner of table readings"),
    ("ALTER TABLE readings ADD COLUMN evil double precision", None, "must be owner"),
    ("SELECT tc_ddl_add_metric_columns(%s)", [["co2; DROP TABLE readings"]], "refused metric name"),
    ("SELECT tc_ddl_add_metric_columns(%s)", [['x" double precision, DROP COLUMN time --']],
     "refused metric name"),
    ("SELECT tc_ddl_add_rollup_columns(%s)", [["a'); DROP TABLE readings; --"]],
     "refused metric name"),
]


def refusal(tc, query, params=None):
    """Run query as the ingest role; return (SQLSTATE, message) of its refusal."""
    with pytest.raises(psycopg.Error) as e:
        tc.ingest_sql(query, params)
    return e.value.sqlstate, str(e.value)


def test_ingest_role_refusals(itc):
    """What the ingest role may not do is refused with PostgreSQL's reason, and the functions
    refuse injected identifiers with the rule; nothing of the store changed."""
    itc.migrate()
    itc.simulate("--devices", "20", "--count", "200", "--seed", "3")
    itc.run()
    columns = lambda: itc.sql(  # noqa: E731
        "SELECT attname FROM pg_attribute WHERE attrelid = 'readings'::regclass AND attnum > 0")
    before, parts = columns(), partitions(itc)
    denied = [
        "SELECT count(*) FROM readings",
        "SELECT * FROM dead_letters",
        "DELETE FROM readings",
        "UPDATE readings SET temperature = 0",
        "TRUNCATE readings",
        "DROP TABLE readings",
        "ALTER TABLE readings ADD COLUMN evil double precision",
        "CREATE TABLE evil (x int)",
        f'SELECT count(*) FROM "{itc.audit_schema}".events',
        f'SELECT * FROM "{itc.api_schema}".latest',
        f"SELECT \"{itc.schema}\".tc_ddl_check_metric('x', 63)",
    ]
    for query in denied:
        state, msg = refusal(itc, query)
        assert state in ("42501",), (query, state, msg)
        assert "permission denied" in msg or "must be owner" in msg, (query, msg)
    injected = [
        ("SELECT tc_ddl_add_metric_columns(%s)", [["co2; DROP TABLE readings"]], "refused metric name"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [['x" double precision, DROP COLUMN time --']],
         "refused metric name"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [["Temperature"]], "refused metric name"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [["time"]], "a column of the fixed schema"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [["schema_version"]], "a column of the fixed schema"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [["temperature"]], "a column of the fixed schema"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [["x" * 64]], "at most 63 bytes"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [[None]], "refused metric name NULL"),
        ("SELECT tc_ddl_add_metric_columns(%s)", [[]], "between 1 and 64"),
        ("SELECT tc_ddl_add_rollup_columns(%s)", [["a'); DROP TABLE readings; --"]],
         "refused metric name"),
        ("SELECT tc_ddl_add_rollup_columns(%s)", [["y" * 60]], "at most 59 bytes"),
        ("SELECT tc_ddl_add_partition(%s)", ["3026-01-01"], "refused partition day"),
        ("SELECT tc_ddl_add_partition(%s)", [None], "refused partition day NULL"),
    ]
    for query, params, reason in injected:
        state, msg = refusal(itc, query, params)
        assert state.startswith("42") and reason in msg, (query, params, state, msg)
    assert columns() == before and partitions(itc) == parts
    # A caller's temporary table named like the store's cannot stand in for it: the functions
    # qualify every name and pin their search_path. The one valid call adds the one column.
    with psycopg.connect(as_ingest(itc.dsn), autocommit=True) as conn:
        conn.execute(f'SET search_path TO pg_temp, "{itc.schema}"')
        conn.execute("CREATE TEMP TABLE readings (x int)")
        conn.execute("SELECT tc_ddl_add_metric_columns(%s)", [["co2"]])
        assert conn.execute("SELECT count(*) FROM pg_temp.readings").fetchone() == (0,)
    assert columns() == [*before, ("co2",)]
    assert itc.sql("SELECT count(*) FROM readings") == [(200,)]


def test_missing_grant_stops_the_pipeline_nothing_lost(itc, tmp_path):
    """Without EXECUTE on the metric-column function (a schema not migrated as its owner since), a
    batch with a new metric stops the pipeline with the error and what to do; nothing is
    committed past it. After docs/operations.md's procedure (migrate as the owner, which grants it
    again, then run) every reading is stored exactly once."""
    itc.migrate()
    itc.simulate("--devices", "20", "--count", "300", "--seed", "5")
    itc.sql(f'REVOKE EXECUTE ON FUNCTION tc_ddl_add_metric_columns(text[]) FROM {INGEST}')
    p = Producer({"bootstrap.servers": itc.brokers})
    now_ms = int(time.time() * 1000)
    for i in range(100):
        doc = {"device_id": f"dev-{i % 10}", "timestamp": now_ms - i, "temperature": 20.5,
               "co2": 400.5 + i}
        p.produce(itc.topic, json.dumps(doc).encode(), key=doc["device_id"].encode())
    assert p.flush(30) == 0
    proc = itc.cmd("run", "--exit-when-idle", "3", check=False)
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "permission denied for function tc_ddl_add_metric_columns" in proc.stderr, \
        proc.stderr[-3000:]
    assert "thermocline migrate" in proc.stderr and "postgres.owner_dsn" in proc.stderr
    (co2,) = itc.sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'readings'::regclass"
                     " AND attname = 'co2'")[0]
    assert co2 == 0
    # docs/operations.md's procedure, as written.
    run_procedure(itc, "pipeline-refused-by-the-store", tmp_path, tmp_path / "lake")
    exp = itc.oracle().expect()
    assert exp["total"] == 400
    (stored, with_co2) = itc.sql("SELECT count(*), count(co2) FROM readings")[0]
    (dead,) = itc.sql("SELECT count(*) FROM dead_letters")[0]
    assert stored == exp["valid"] and dead == len(exp["dead"]) and with_co2 == 100
    (dupes,) = itc.sql("SELECT count(*) FROM (SELECT kafka_partition, kafka_offset FROM readings"
                       " GROUP BY 1, 2 HAVING count(*) > 1) d")[0]
    assert dupes == 0
