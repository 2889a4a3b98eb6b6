"""Two pipeline processes in one consumer group; one is killed: the other takes its partitions over
and the outcome is exact."""

import time

from faultlib import SCALE, assert_exact, log, make_rng, random_delay


def test_two_members_one_killed(pipeline, tmp_path):
    rng = make_rng()
    p = pipeline
    lake = str(tmp_path / "lake")
    n = SCALE["readings"]
    p.migrate()
    sim = p.simulate(n, rate=max(500, n // 20), seed=rng.randrange(1 << 30))
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    a = p.spawn(extra, idle=5)
    b = p.spawn(extra, idle=5)
    try:
        deadline = time.time() + 120
        while True:
            pa, pb = a.assigned(), b.assigned()
            if pa and pb and not pa & pb and len(pa | pb) == p.partitions:
                break
            assert time.time() < deadline, f"no balanced assignment: {pa} / {pb}"
            time.sleep(0.2)
        time.sleep(random_delay(rng, 0.5, 3.0))
        taken = a.assigned()
        stored = p.stored()
        mark = len(b.lines)
        t_kill = time.time()
        a.kill()
        for q in sorted(taken):
            b.wait_for(rf'"msg":"assigned {p.topic} \[{q}\]', timeout=120, start=mark)
        takeover_s = time.time() - t_kill
        summary = sim.wait()
        rc = b.finish(600)
    finally:
        for m in (a, b):
            if m.alive():
                m.kill()
    a.assert_clean()
    b.assert_clean()
    assert rc == 0, b.text()[-8000:]
    exp = assert_exact(p, lake, produced=summary["produced"])
    log(f"two members: killed the one holding partitions {sorted(taken)} with {stored} readings "
        f"stored; the other took them over in {takeover_s:.1f} s; {exp['valid']} valid and "
        f"{len(exp['dead'])} dead letters exactly once, lag 0")
