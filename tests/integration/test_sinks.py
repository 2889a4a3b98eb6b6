"""The pipeline's generic paths for any sink behind src/process/sink.h, proven with the testfail
sink (a testing aid that fails on command: its control file says ok, fail-transient or
fail-permanent, and it appends what it makes durable to its record file). Back-off and recovery
while the other sinks go on, catch-up from the sink's own mark while the others skip what they
hold, readiness and metrics per sink, and nothing lost or duplicated in any sink."""

import collections
import json
import os
import re
import signal

import pyarrow.dataset as ds

from test_observe import free_port, get, metrics, wait_for, _up
from test_pipeline import assert_store_matches, group_lag

SINKS = "store,lake,rollups,testfail"


def recorded(path):
    """(partition, offset) of every row the testfail sink made durable, with repeats."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(int(p), int(o)) for kind, p, o in (line.split() for line in f) if kind == "row"]


def assert_exactly_once(tc, record, lake=None):
    stored = set(tc.sql("SELECT kafka_partition, kafka_offset FROM readings"))
    rows = recorded(record)
    twice = [k for k, n in collections.Counter(rows).items() if n > 1]
    assert not twice, f"the testfail sink has {len(twice)} rows twice, e.g. {twice[:5]}"
    assert set(rows) == stored, (len(rows), len(stored), sorted(set(rows) ^ stored)[:10])
    if lake:
        t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet",
                       partitioning="hive").to_table()
        keys = list(zip(t.column("kafka_partition").to_pylist(),
                        t.column("kafka_offset").to_pylist()))
        assert len(keys) == len(set(keys)) and set(keys) == stored, (len(keys), len(stored))


def sink_metric(port, family, sink):
    return metrics(port).get(f'{family}{{sink="{sink}"}}')


def test_a_sink_failing_for_a_while_backs_off_and_catches_up(tc, tmp_path):
    control, record, lake = (str(tmp_path / n) for n in ("control", "record", "lake"))
    with open(control, "w") as f:
        f.write("ok\n")
    tc.migrate()
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}", f"pipeline.sinks={SINKS}",
                                  f"testfail.control_file={control}",
                                  f"testfail.record_file={record}", f"lake.dir={lake}",
                                  "lake.roll_seconds=1"))
    try:
        assert wait_for(lambda: _up(port))
        assert wait_for(lambda: get(port, "/readyz")[0] == 200), get(port, "/readyz")
        assert json.loads(get(port, "/readyz")[1])["sinks"] == {
            "store": True, "lake": True, "rollups": True, "testfail": True}
        tc.simulate("--devices", "50", "--count", "2000", "--invalid-ratio", "0.02", "--seed", "5")
        stored = lambda: tc.sql("SELECT count(*) FROM readings")[0][0]
        dead = lambda: tc.sql("SELECT count(*) FROM dead_letters")[0][0]
        assert wait_for(lambda: stored() + dead() == 2000, timeout=120)
        assert wait_for(lambda: len(recorded(record)) == stored(), timeout=120)

        # The sink fails: it is not ready, and the store goes on without it.
        with open(control, "w") as f:
            f.write("fail-transient\n")
        tc.simulate("--devices", "50", "--count", "3000", "--invalid-ratio", "0.02", "--seed", "6")
        assert wait_for(lambda: get(port, "/readyz")[0] == 503, timeout=120)
        status, body = get(port, "/readyz")
        assert "testfail" in json.loads(body)["reason"], body
        assert json.loads(body)["sinks"]["testfail"] is False
        assert json.loads(body)["sinks"]["store"] is True
        assert wait_for(lambda: stored() + dead() == 5000, timeout=120)
        # Back-off: the recovery is tried again and again while the sink still fails.
        assert wait_for(lambda: (sink_metric(port, "thermocline_sink_failures_total", "testfail")
                                 or 0) >= 3, timeout=120)
        assert sink_metric(port, "thermocline_sink_ready", "testfail") == 0
        assert sink_metric(port, "thermocline_sink_ready", "store") == 1
        behind = len(recorded(record))
        assert behind < stored()

        # It recovers and catches up from its own mark; the others skip what they hold.
        with open(control, "w") as f:
            f.write("ok\n")
        assert wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=120), get(port, "/readyz")
        assert wait_for(lambda: len(recorded(record)) >= stored(), timeout=120)
        assert sink_metric(port, "thermocline_sink_recoveries_total", "testfail") >= 1
        assert wait_for(lambda: sink_metric(port, "thermocline_sink_rows_durable_total",
                                            "testfail") == len(recorded(record)))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    tc.assert_clean(err)
    assert "sink testfail: testfail: append refused" in err or "sink testfail: testfail: flush" in err
    assert "sink testfail recovered" in err
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == exp["valid"]
    assert_exactly_once(tc, record, lake)
    assert group_lag(tc, exp["ends"]) == 0


def test_a_sink_added_later_catches_up_while_the_others_skip(tc, tmp_path):
    control, record = str(tmp_path / "control"), str(tmp_path / "record")
    tc.migrate()
    tc.simulate("--devices", "100", "--count", "3000", "--invalid-ratio", "0.02", "--seed", "8")
    tc.run(idle=3, extra=("pipeline.sinks=store,rollups",))
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert not os.path.exists(record)
    # The sink comes with the next run: it reads everything from its own mark (none), while the
    # store and the rollups, at the end already, take nothing twice.
    proc = tc.run(idle=3, extra=("pipeline.sinks=store,rollups,testfail",
                                 f"testfail.control_file={control}",
                                 f"testfail.record_file={record}"))
    assert "sink testfail resumes at -1" in proc.stderr, proc.stderr[-3000:]
    progress = [json.loads(line)["msg"] for line in proc.stderr.splitlines()
                if '"progress: ' in line]
    assert progress and f"testfail {exp['valid']}" in progress[-1], progress[-3:]
    assert_store_matches(tc, exp)
    assert tc.sql("SELECT sum(n) FROM rollup_1m_live")[0][0] == exp["valid"]
    assert_exactly_once(tc, record)
    assert group_lag(tc, exp["ends"]) == 0


def test_a_permanent_failure_stops_the_run_and_the_next_run_resumes(tc, tmp_path):
    control, record = str(tmp_path / "control"), str(tmp_path / "record")
    tc.migrate()
    tc.simulate("--devices", "100", "--count", "2000", "--seed", "9")
    with open(control, "w") as f:
        f.write("fail-permanent\n")
    extra = (f"pipeline.sinks={SINKS}", f"testfail.control_file={control}",
             f"testfail.record_file={record}")
    proc = tc.cmd("run", "--exit-when-idle", "3", extra=extra, check=False, timeout=300)
    assert proc.returncode != 0
    assert "sink testfail" in proc.stderr and "fail-permanent" in proc.stderr, proc.stderr[-3000:]
    assert recorded(record) == []
    with open(control, "w") as f:
        f.write("ok\n")
    tc.run(idle=3, extra=extra)
    exp = tc.oracle().expect()
    assert_store_matches(tc, exp)
    assert_exactly_once(tc, record)


def test_the_sink_list_is_checked(tc, tmp_path):
    for sinks, says in (("store,bogus", 'unknown sink \\"bogus\\"'),
                        ("store,lake,lake", '\\"lake\\" is listed twice'),
                        ("lake,rollups", "must name store"),
                        ("store,testfail", "testfail.record_file")):
        proc = tc.cmd("run", "--exit-when-idle", "1", extra=(f"pipeline.sinks={sinks}",),
                      check=False, timeout=120)
        assert proc.returncode != 0 and says in proc.stderr, (sinks, proc.stderr[-2000:])


def test_each_sink_reports_the_cpu_it_costs(tc):
    """thermocline_sink_cpu_seconds_total per sink of the set (the pipeline thread's CPU in its
    calls and its own threads'), and the same figure in the progress line: above zero for every
    sink that took readings, within the process's CPU, and not given for the primary."""
    tc.migrate()
    port = free_port()
    proc = tc.spawn("run", extra=(f"http.listen=127.0.0.1:{port}",
                                  "pipeline.sinks=store,rollups,quality"))
    try:
        assert wait_for(lambda: _up(port))
        tc.simulate("--devices", "200", "--count", "20000", "--seed", "31")
        assert wait_for(lambda: tc.sql("SELECT count(*) FROM readings")[0][0] == 20000,
                        timeout=120)
        assert wait_for(lambda: (sink_metric(port, "thermocline_sink_rows_durable_total",
                                             "quality") or 0) == 20000, timeout=120)
        m = metrics(port)
        cpu = {s: m.get(f'thermocline_sink_cpu_seconds_total{{sink="{s}"}}')
               for s in ("store", "rollups", "quality")}
        assert cpu["store"] is None, cpu  # the primary: its cost is the pipeline's own
        assert cpu["rollups"] > 0 and cpu["quality"] > 0, cpu
        assert cpu["rollups"] + cpu["quality"] < m["process_cpu_seconds_total"], (cpu, m)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    progress = [json.loads(line)["msg"] for line in err.splitlines() if '"progress: ' in line]
    last = re.search(r", quality 20000 \(cpu ([0-9.]+) s\)", progress[-1])
    assert last and float(last.group(1)) >= cpu["quality"] - 0.0005, progress[-1]
