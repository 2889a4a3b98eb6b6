"""kill -9 at random moments of a run, again and again, then one clean run to the end."""

import time

from faultlib import SCALE, assert_exact, log, make_rng, random_delay

# Seconds one kill takes: the restarted process waits for the dead one's session to time out
# (6 s), joins, and is killed at a random moment of up to 2.5 s after it got its partitions.
CYCLE_S = 7.5


def test_kill9_loop(pipeline, tmp_path):
    """The pipeline is killed with SIGKILL at least SCALE["kills"] times while the simulator
    produces; each time it is restarted. At the end the store and the lake hold exactly the
    valid readings, the dead letters exactly the invalid ones, and the group lag is zero."""
    rng = make_rng()
    p = pipeline
    lake = str(tmp_path / "lake")
    n, kills = SCALE["kill_readings"], SCALE["kills"]
    p.migrate()
    # Produce for about as long as the kills take, so that every kill hits a running pipeline.
    rate = max(500, int(n / (kills * CYCLE_S)))
    sim = p.simulate(n, rate=rate, seed=rng.randrange(1 << 30))
    # Small batches and one-second lake commits: a kill lands in a store transaction or a lake
    # commit (files renamed, progress not yet written) often.
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    t0 = time.time()
    seen = []
    while len(seen) < kills:
        m = p.spawn(extra)
        m.wait_for(r'"msg":"assigned ', timeout=120)
        delay = random_delay(rng, 0.0, 2.5)
        time.sleep(delay)  # not synchronisation: where the kill lands
        assert m.alive(), f"the pipeline exited on its own:\n{m.text()[-6000:]}"
        stored = p.stored()
        m.kill()
        m.assert_clean()
        seen.append(stored)
        log(f"kill {len(seen)}: {delay:.2f} s after assignment, {stored} readings stored, "
            f"simulator {'done' if sim.done() else 'running'}")
    loop_s = time.time() - t0
    summary = sim.wait()
    t1 = time.time()
    p.run(extra, idle=3)
    exp = assert_exact(p, lake, produced=n)
    log(f"kill -9 loop: {kills} kills in {loop_s:.0f} s, {n} readings at {rate}/s, final run "
        f"{time.time() - t1:.0f} s; {exp['valid']} valid and {len(exp['dead'])} dead letters "
        f"exactly once in store and lake, lag 0")
    assert summary["produced"] == n and summary["failed"] == 0
    # The kills fell inside the run: the store grew between them and was never complete at a kill
    # (a kill right after the first assignments may come before the first batch is written).
    assert seen == sorted(seen)
    assert all(s < exp["valid"] for s in seen), seen
    assert sum(1 for s in seen if s > 0) >= kills // 2, seen
