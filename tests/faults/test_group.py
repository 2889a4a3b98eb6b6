"""Pipeline processes in one consumer group: two, one of which is killed, the other taking its
partitions over; and three killed and restarted at random while a fourth joins. The outcome is
exact in both."""

import time

from faultlib import SCALE, assert_exact, log, make_rng, random_delay, wait_caught_up


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
        time.sleep(random_delay(rng, 0.5, 3.0))  # not synchronisation: where the fault lands
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


def test_members_killed_at_random(pipeline, tmp_path):
    """Three members in one group share the topic, the store and the lake. One picked at random is
    killed with SIGKILL at a random moment and started again, SCALE["group_kills"] times; half-way a
    fourth member joins. Once the simulator is done and everything is caught up, all of them are
    stopped with SIGTERM. The store and the lake must hold exactly the topic's valid readings:
    counts, sums and the (partition, offset) key sets."""
    rng = make_rng()
    p = pipeline
    lake = str(tmp_path / "lake")
    n, kills = SCALE["readings"], SCALE["group_kills"]
    p.migrate()
    # Production lasts about as long as the kills (one every 1 to 4 s).
    sim = p.simulate(n, rate=max(300, n // (kills * 4)), seed=rng.randrange(1 << 30))
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    members = [p.spawn(extra) for _ in range(3)]
    dead = []
    killed_at = []
    try:
        for m in members:
            m.wait_for(r'"msg":"assigned ', timeout=180)
        for k in range(kills):
            time.sleep(random_delay(rng, 1.0, 4.0))  # not synchronisation: where the kill lands
            if k == kills // 2:
                members.append(p.spawn(extra))
                log(f"after kill {k}: a fourth member joins")
            # A member holding partitions when there is one: killing an idle newcomer proves less.
            holders = [i for i, m in enumerate(members) if m.assigned()]
            victim = rng.choice(holders or range(len(members)))
            m = members[victim]
            assert m.alive(), f"{m.name} exited on its own:\n{m.text()[-6000:]}"
            killed_at.append(p.stored())
            m.kill()
            dead.append(m)
            members[victim] = p.spawn(extra)
            log(f"kill {k + 1}: {m.name} ({sorted(m.assigned())}) with {killed_at[-1]} stored, "
                f"simulator {'done' if sim.done() else 'running'}")
        summary = sim.wait()
        catch_up_s = wait_caught_up(p, members[0], lake, timeout=600)
        rcs = [m.stop() for m in members]
    finally:
        for m in members:
            if m.alive():
                m.kill()
    for m in dead + members:
        m.assert_clean()
    assert rcs == [0] * len(members), [m.text()[-3000:] for m in members]
    assert summary["produced"] == n and summary["failed"] == 0, summary
    exp = assert_exact(p, lake, produced=n)
    # The kills fell inside the run: the store was never complete at one.
    assert all(s < exp["valid"] for s in killed_at), killed_at
    log(f"group of 3 then 4: {kills} kills, {n} readings, caught up {catch_up_s:.0f} s after the "
        f"simulator finished; {exp['valid']} valid and {len(exp['dead'])} dead letters exactly "
        f"once in store and lake, lag 0")
