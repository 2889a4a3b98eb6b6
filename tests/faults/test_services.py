"""PostgreSQL and the Kafka broker stop and come back in the middle of a run: the pipeline waits
and retries with back-off, never exits, and ends with exactly the right data."""

import time

import pytest

from faultlib import SCALE, assert_exact, log, make_rng, random_delay, wait_caught_up

OUTAGE_S = 5


@pytest.mark.parametrize("service", ["postgres", "kafka"])
def test_service_restart_mid_run(pipeline, services, tmp_path, service):
    rng = make_rng()
    p = pipeline
    lake = str(tmp_path / "lake")
    n = SCALE["readings"]
    p.migrate()
    sim = p.simulate(n, rate=max(500, n // 20), seed=rng.randrange(1 << 30))
    # A daemon, stopped with SIGTERM once it has everything: with --exit-when-idle it could leave
    # while the simulator's deliveries are still held up by the broker outage.
    m = p.spawn((f"lake.dir={lake}", "lake.roll_seconds=1"))
    try:
        m.wait_for(r'"msg":"assigned ', timeout=120)
        deadline = time.time() + 60
        while p.stored() == 0 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(random_delay(rng, 0.0, 2.0))
        before = p.stored()
        assert 0 < before < n
        mark = len(m.lines)
        down_s = services.down(service)
        time.sleep(OUTAGE_S)
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
    exp = assert_exact(p, lake, produced=summary["produced"])
    log(f"{service} restart: down after {before} readings stored (stop took {down_s:.1f} s), "
        f"{OUTAGE_S} s outage, start took {up_s:.1f} s, {retries} logged retries, caught up "
        f"{catch_up_s:.0f} s after the simulator finished; {exp['valid']} valid and "
        f"{len(exp['dead'])} dead letters exactly once, lag 0")
