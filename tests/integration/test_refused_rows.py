"""Rows PostgreSQL refuses although they passed validation (a column an operator narrowed, a CHECK
added to readings) are a permanent error of those rows only: they are isolated into the dead
letters with PostgreSQL's reason, and the rest of their batch is stored, in both stores."""

import glob
import json
import os
import time

import duckdb
from confluent_kafka import Producer


def test_refused_rows_become_dead_letters_and_the_batch_is_kept(tc, tmp_path):
    tc.migrate()
    tc.simulate("--count", "0")  # creates the topic
    with __import__("psycopg").connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        # The api's views read device_id: a column type changes under them only without them.
        conn.execute(f'DROP SCHEMA "{tc.api_schema}" CASCADE')
        conn.execute("DROP VIEW readings_1m, readings_1h, rollup_1m_live, rollup_1h_live")
        conn.execute("ALTER TABLE readings ALTER COLUMN device_id TYPE varchar(12)")
        conn.execute("SELECT tc_ddl_rollup_views()")  # the rollup views read it too
        conn.execute("ALTER TABLE readings ADD CONSTRAINT temperature_sane CHECK (temperature < 60)")
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    p = Producer({"bootstrap.servers": tc.brokers})
    long_ids, hot = set(), set()
    for i in range(2000):
        dev = f"d-{i % 50}"
        temp = 20.5
        if i % 250 == 7:
            dev = f"device-with-a-long-name-{i}"  # 22001: value too long for varchar(12)
            long_ids.add(dev)
        elif i % 300 == 11:
            temp = 75.0  # passes validation, breaks the CHECK (23514 naming a constraint)
            hot.add((dev, i))
        doc = {"device_id": dev, "timestamp": ts, "temperature": temp, "seq": i}
        p.produce(tc.topic, json.dumps(doc).encode(), key=dev.encode())
    assert p.flush(30) == 0
    lake = str(tmp_path / "lake")
    proc = tc.run(idle=2, extra=(f"lake.dir={lake}", "pipeline.batch_size=500"))
    tc.assert_clean(proc.stderr)

    refused = len(long_ids) + len(hot)
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 2000 - refused
    dead = tc.sql("SELECT reason, stage, detail, convert_from(payload, 'UTF8') FROM dead_letters")
    assert len(dead) == refused
    assert {r[0] for r in dead} == {"store_refused"} and {r[1] for r in dead} == {"store"}
    too_long = [r for r in dead if "value too long" in r[2]]
    check = [r for r in dead if "temperature_sane" in r[2]]
    assert len(too_long) == len(long_ids) and len(check) == len(hot)
    assert {json.loads(r[3])["device_id"] for r in too_long} == long_ids
    assert {json.loads(r[3])["seq"] for r in check} == {i for _, i in hot}
    # Both stores keep the same readings, and the rollups count exactly those.
    files = glob.glob(os.path.join(lake, "telemetry", "*", "*", "*", "*.parquet"))
    ((n_lake,),) = duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r}, union_by_name=true)"
                              ).fetchall()
    assert n_lake == 2000 - refused
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == 2000 - refused
    assert "dead-lettered" in proc.stderr


def test_a_column_every_row_breaks_stops_the_run(tc):
    tc.migrate()
    tc.simulate("--devices", "5", "--count", "200", "--seed", "4")
    with __import__("psycopg").connect(tc.dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{tc.schema}"')
        conn.execute(f'DROP SCHEMA "{tc.api_schema}" CASCADE')  # its views read device_id
        conn.execute("DROP VIEW readings_1m, readings_1h, rollup_1m_live, rollup_1h_live")
        conn.execute("ALTER TABLE readings ALTER COLUMN device_id TYPE varchar(3)")
    proc = tc.cmd("run", "--exit-when-idle", "2", check=False, timeout=300)
    assert proc.returncode != 0
    assert "stopping rather than dead-lettering the stream" in proc.stderr, proc.stderr[-3000:]
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == 0
    # At most a first batch of a single reading can have been taken for one bad row.
    assert tc.sql("SELECT count(*) FROM dead_letters")[0][0] <= 1
