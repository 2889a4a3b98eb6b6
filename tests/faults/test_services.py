"""PostgreSQL and the Kafka broker stop and come back in the middle of a run: the pipeline waits
and retries with back-off, never exits, and ends with exactly the right data. The long PostgreSQL
outage outlasts the consumer's max.poll.interval.ms: the member goes on serving the consumer (its
partitions paused) while it waits, so the broker does not take its partitions away, and it still
ends exact."""

import time

import pytest

from faultlib import SCALE, assert_exact, log, make_rng, random_delay, wait_caught_up

OUTAGE_S = 5
# The long outage: past max.poll.interval.ms, which the run sets to this (librdkafka wants it at
# least session.timeout.ms).
LONG_OUTAGE_S = 20
POLL_INTERVAL_MS = 8000


@pytest.mark.parametrize("service,outage_s", [("postgres", OUTAGE_S), ("kafka", OUTAGE_S),
                                              ("postgres", LONG_OUTAGE_S)],
                         ids=["postgres", "kafka", "postgres-long"])
def test_service_restart_mid_run(pipeline, services, tmp_path, service, outage_s):
    rng = make_rng()
    p = pipeline
    lake = str(tmp_path / "lake")
    n = SCALE["readings"]
    p.migrate()
    sim = p.simulate(n, rate=max(500, n // 20), seed=rng.randrange(1 << 30))
    # A daemon, stopped with SIGTERM once it has everything: with --exit-when-idle it could leave
    # while the simulator's deliveries are still held up by the broker outage.
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1")
    if outage_s > OUTAGE_S:
        extra += (f"rdkafka.max.poll.interval.ms={POLL_INTERVAL_MS}",)
    m = p.spawn(extra)
    try:
        m.wait_for(r'"msg":"assigned ', timeout=120)
        deadline = time.time() + 60
        while p.stored() == 0 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(random_delay(rng, 0.0, 2.0))  # not synchronisation: where the fault lands
        before = p.stored()
        assert 0 < before < n
        mark = len(m.lines)
        down_s = services.down(service)
        time.sleep(outage_s)  # the fault, held for its stated time
        assert m.alive(), f"the pipeline exited while {service} was down:\n{m.text()[-6000:]}"
        if service == "postgres":
            # It noticed, and backs off rather than spinning or giving up.
            m.wait_for(r"retrying in \d+ ms", timeout=30, start=mark)
        up_s = services.up(service)
        assert m.alive()
        summary = sim.wait()
        catch_up_s = wait_caught_up(p, m, lake)
        rc = m.stop()
    finally:
        if m.alive():
            m.kill()
    m.assert_clean()
    assert rc == 0, m.text()[-8000:]
    retries = sum(1 for _lvl, _c, msg in m.messages() if "retrying in" in msg)
    if outage_s > OUTAGE_S:
        # A database outage alone does not cost the member its partitions.
        assert "maximum poll interval" not in m.text() and "partitions lost" not in m.text(), \
            m.text()[-6000:]
    exp = assert_exact(p, lake, produced=summary["produced"])
    log(f"{service} restart: down after {before} readings stored (stop took {down_s:.1f} s), "
        f"{outage_s} s outage, start took {up_s:.1f} s, {retries} logged retries, caught up "
        f"{catch_up_s:.0f} s after the simulator finished; {exp['valid']} valid and "
        f"{len(exp['dead'])} dead letters exactly once, lag 0")
