"""The BI dashboards (deploy/grafana/dashboards/fleet-overview.json, device-drilldown.json) and
docs/bi.md's example queries, against a store the pipeline filled: every panel's SQL, with
Grafana's macros expanded as Grafana's PostgreSQL datasource does (test_alerting.sql_panel), and
every example, return rows with values as the BI role -- a login role in thermocline_analyst
with every site in api.site_access, the set-up docs/bi.md gives, logged in -- and that role reads
nothing else."""

import contextlib
import json
import os
import re

import psycopg
import pytest

from api_data import dsn_as, login_role
from conftest import ROOT
from test_alerting import BI_DASHBOARDS, GRAFANA, check_dashboard_shape, read, sql_panel

DOC = os.path.join(ROOT, "docs", "bi.md")
DEVICES = 12
FEATURES = "temp_mean_1h = mean(temperature, 1h); battery_last_1h = last(battery, 1h)"


@pytest.fixture(scope="module")
def store():
    """A store filled by the pipeline: readings of the last minutes, rollups, quality figures,
    online features, dead letters; and one finding (the detectors need hours of history to find one)."""
    from conftest import Thermocline
    tc = Thermocline("bi")
    try:
        tc.migrate()
        tc.simulate("--devices", str(DEVICES), "--count", "1200", "--invalid-ratio", "0.05",
                    "--seed", "20")
        tc.run(extra=("pipeline.sinks=store,rollups,quality,features", "quality.flush_interval_ms=300",
                      f"features.definitions={FEATURES}"))
        tc.sql("INSERT INTO anomalies (device_id, metric, kind, severity, start_time, score,"
               " observed, expected) SELECT min(device_id), 'temperature', 'spike', 'warning',"
               " now() - interval '5 minutes', 9, 41.5, 21.0 FROM latest_state")
        yield tc
    finally:
        tc.drop()


@contextlib.contextmanager
def as_bi(tc):
    """A connection of a fresh login role set up as docs/bi.md says: a member of
    thermocline_analyst with every site in api.site_access."""
    with login_role(tc, "thermocline_analyst") as role:
        tc.sql(f'INSERT INTO "{tc.api_schema}".site_access VALUES (%s, %s)', (role, "*"))
        with psycopg.connect(dsn_as(tc, role), autocommit=True) as conn:
            yield conn


def has_values(rows):
    """Rows, and at least one value that is not NULL beyond a label column."""
    return bool(rows) and any(v is not None for r in rows for v in r)


def test_every_panel_returns_rows_as_the_bi_role(store):
    ds = read(os.path.join(GRAFANA, "provisioning", "datasources", "thermocline.yml"))
    bi = ds[ds.index("uid: thermocline-bi"):]
    assert "user: thermocline_bi" in bi and "sslmode: verify-full" in bi
    device = store.sql("SELECT min(device_id) FROM readings")[0][0]
    empty, ran = [], 0
    with as_bi(store) as conn:
        for name in sorted(BI_DASHBOARDS):
            dash = json.loads(read(os.path.join(GRAFANA, "dashboards", name)))
            check_dashboard_shape(dash, {"thermocline-bi"})
            variables = {"api": store.api_schema, "device": device}
            # A query variable's SQL runs too: the drill-down's device list.
            for v in dash["templating"]["list"]:
                if v["type"] == "query":
                    rows = conn.execute(sql_panel(v["query"], store.schema, variables)).fetchall()
                    assert device in {r[0] for r in rows}, (name, v["name"], rows)
            for p in dash["panels"]:
                for t in p["targets"]:
                    assert '"$api".' in t["rawSql"] and '"$schema"' not in t["rawSql"], p["title"]
                    rows = conn.execute(sql_panel(t["rawSql"], store.schema, variables)).fetchall()
                    ran += 1
                    if not has_values(rows):
                        empty.append(f"{name}: {p['title']}")
    assert ran >= 15
    assert not empty, f"panels without data: {empty}"


def doc_examples():
    text = read(DOC)
    section = text[text.index("## Example queries"):text.index("## Tests")]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_doc_examples_return_rows_as_the_bi_role(store):
    examples = doc_examples()
    assert len(examples) >= 6
    with as_bi(store) as conn:
        for q in examples:
            q = re.sub(r"\bapi\.", f'"{store.api_schema}".', q)
            assert has_values(conn.execute(q).fetchall()), q


def test_the_bi_role_reads_only_the_api(store):
    with as_bi(store) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{store.api_schema}".latest').fetchone()[0] == DEVICES
        refused = [f'SELECT 1 FROM "{store.schema}".readings LIMIT 1',
                   f'SELECT 1 FROM "{store.api_schema}".dead_letters LIMIT 1',
                   f'SELECT 1 FROM "{store.audit_schema}".events LIMIT 1',
                   f'INSERT INTO "{store.api_schema}".site_access VALUES (current_user, \'x\')',
                   f'DELETE FROM "{store.api_schema}".site_access']
        for q in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(q)
