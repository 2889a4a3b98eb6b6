"""Brokers of a three-broker cluster are lost during a run. The topic has replication 3 and
min.insync.replicas 2 (Thermocline's defaults) and every producer of ours uses acks=all with
idempotence. With one broker down, leadership moves and ingestion goes on: nothing is lost or
duplicated. With two down, no write can reach two replicas and the controller quorum is gone:
the simulator's deliveries and the pipeline wait, neither gives up, and both resume when the
brokers return. The end state is exact in the store and the lake. Last, the runbook for a lost
broker (docs/operations.md) is run as written while a broker is down."""

import subprocess
import time

from confluent_kafka.admin import AdminClient, ConfigResource

from faultlib import (ROOT, SCALE, SCALE_NAME, SIM_KAFKA_DEBUG, assert_delivered, assert_exact,
                      log, make_rng, random_delay, wait_caught_up)
from procedures import procedure

# Seconds with one broker down, then with two down, in each round.
ONE_DOWN_S = 6
TWO_DOWN_S = 8
# Rounds of "one down, two down, both back": the long form repeats them.
ROUNDS = {"bounded": 1, "full": 3}[SCALE_NAME]


def wait_growth(p, m, before, timeout):
    """Wait until the store holds more than `before` readings; return how many it holds."""
    deadline = time.time() + timeout
    while True:
        assert m.alive(), f"{m.name} exited:\n{m.text()[-6000:]}"
        now = p.stored()
        if now > before:
            return now
        assert time.time() < deadline, f"the store stayed at {before} readings for {timeout} s"
        time.sleep(0.2)


def settle(p, m, sim, lake, n):
    """The simulator finishes with every reading delivered, and the topic holds, partition by
    partition, what its delivery reports say; the pipeline catches up and stops cleanly. Returns
    how long the catching up took after the simulator was done."""
    summary = sim.wait()
    assert summary["produced"] == n and summary["failed"] == 0, summary
    assert_delivered(p, sim)
    catch_up_s = wait_caught_up(p, m, lake, timeout=300)
    rc = m.stop()
    m.assert_clean()
    assert rc == 0, m.text()[-8000:]
    return catch_up_s


def assert_replicated(brokers, topic):
    """The topic Thermocline created has 3 replicas per partition and min.insync.replicas 2."""
    admin = AdminClient({"bootstrap.servers": brokers})
    deadline = time.time() + 60
    while topic not in admin.list_topics(timeout=30).topics:
        assert time.time() < deadline, f"topic {topic} was not created"
        time.sleep(0.2)
    md = admin.list_topics(topic, timeout=30).topics[topic]
    assert md.partitions and all(len(pm.replicas) == 3 for pm in md.partitions.values()), \
        {q: pm.replicas for q, pm in md.partitions.items()}
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = admin.describe_configs([res])[res].result(timeout=30)
    assert cfg["min.insync.replicas"].value == "2", cfg["min.insync.replicas"]
    assert cfg["retention.ms"].value == str(7 * 24 * 3600 * 1000), cfg["retention.ms"]


def test_brokers_lost_mid_run(cluster_pipeline, cluster, tmp_path):
    rng = make_rng()
    p = cluster_pipeline
    lake = str(tmp_path / "lake")
    n = SCALE["readings"]
    p.migrate()
    # Production spans every round (each takes ONE_DOWN_S + TWO_DOWN_S, the stops and the start,
    # up to 40 s on a loaded machine): the simulator must still be producing when two are down.
    rate = max(300, n // (ROUNDS * 60))
    sim = p.simulate(n, rate=rate, seed=rng.randrange(1 << 30), extra=SIM_KAFKA_DEBUG)
    extra = (f"lake.dir={lake}", "lake.roll_seconds=1", "pipeline.batch_size=500")
    m = p.spawn(extra)
    report = []
    try:
        m.wait_for(r'"msg":"assigned ', timeout=120)
        assert_replicated(p.brokers, p.topic)
        assert_replicated(p.brokers, f"{p.topic}-dlq")
        stored = wait_growth(p, m, 0, 60)
        for rnd in range(ROUNDS):
            first, second = rng.sample(range(1, cluster.NODES + 1), 2)
            time.sleep(random_delay(rng, 0.0, 2.0))  # not synchronisation: where the fault lands
            # One broker down: the partitions it led move to the others, ingestion goes on.
            before_one = p.stored()
            down1_s = cluster.down(first)
            during_one = wait_growth(p, m, p.stored(), 60)
            time.sleep(ONE_DOWN_S)  # the fault, held for its stated time
            assert m.alive(), f"the pipeline exited with broker {first} down:\n{m.text()[-6000:]}"
            # Two down: no partition can take a write, ingestion waits.
            before_two = p.stored()
            down2_s = cluster.down(second)
            time.sleep(TWO_DOWN_S)  # the fault, held for its stated time
            assert m.alive(), f"the pipeline exited with two brokers down:\n{m.text()[-6000:]}"
            assert not sim.done(), "the simulator finished with two of three brokers down"
            at_two = p.stored()
            # Both back: everything resumes.
            up_s = cluster.up()
            resumed = wait_growth(p, m, at_two, 120)
            report.append(f"round {rnd + 1}: broker {first} down after {before_one} stored "
                          f"(stop {down1_s:.1f} s), {during_one} stored with it down, broker "
                          f"{second} down after {before_two} (stop {down2_s:.1f} s), {at_two} "
                          f"after {TWO_DOWN_S} s with two down, both back in {up_s:.1f} s, "
                          f"{resumed} stored after")
        catch_up_s = settle(p, m, sim, lake, n)
    finally:
        if m.alive():
            m.kill()
        cluster.up()
    exp = assert_exact(p, lake, produced=n)
    for line in report:
        log(line)
    log(f"brokers lost: {ROUNDS} round(s), {n} readings at {rate}/s, caught up {catch_up_s:.0f} s "
        f"after the simulator finished; {exp['valid']} valid and {len(exp['dead'])} dead letters "
        f"exactly once in store and lake, lag 0")


def test_broker_lost_runbook(cluster_pipeline, cluster, tmp_path):
    """docs/operations.md "Broker lost", run as written while a broker is down and the pipeline
    and the simulator go on: it must show the under-replicated partitions and no unavailable one,
    bring the broker back and wait until every replica is in sync again; the run ends exact."""
    rng = make_rng()
    p = cluster_pipeline
    lake = str(tmp_path / "lake")
    n = SCALE["readings"]
    p.migrate()
    sim = p.simulate(n, rate=max(300, n // 30), seed=rng.randrange(1 << 30),
                     extra=SIM_KAFKA_DEBUG)
    m = p.spawn((f"lake.dir={lake}", "lake.roll_seconds=1"))
    lost = rng.randrange(1, cluster.NODES + 1)
    try:
        m.wait_for(r'"msg":"assigned ', timeout=120)
        wait_growth(p, m, 0, 60)
        cluster.down(lost)
        during = wait_growth(p, m, p.stored(), 60)
        env = dict(cluster.env, TOPIC=p.topic, GROUP=p.group, SCHEMA=p.schema,
                   BROKER=f"kafka{lost}")
        t0 = time.time()
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", procedure("broker-lost")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        runbook_s = time.time() - t0
        assert proc.returncode == 0, f"broker-lost exited {proc.returncode}\n{proc.stdout[-4000:]}" \
                                     f"\n{proc.stderr[-6000:]}"
        catch_up_s = settle(p, m, sim, lake, n)
    finally:
        if m.alive():
            m.kill()
        cluster.up()
    # Before the broker came back its partitions were listed as under-replicated (with the lost
    # broker out of their in-sync replicas), and the group's offsets were printed at the end.
    lines = proc.stdout.splitlines()
    urp = [line for line in lines if "Isr:" in line]
    assert urp and all(str(lost) not in line.split("Isr:")[1].split()[0].split(",")
                       for line in urp), proc.stdout[-4000:]
    assert p.group in proc.stdout, proc.stdout[-4000:]
    # Every replica is in sync again.
    admin = AdminClient({"bootstrap.servers": p.brokers})
    md = admin.list_topics(p.topic, timeout=30).topics[p.topic]
    assert all(len(pm.isrs) == 3 for pm in md.partitions.values()), \
        {q: pm.isrs for q, pm in md.partitions.items()}
    exp = assert_exact(p, lake, produced=n)
    log(f"broker lost (runbook): kafka{lost} down with {during} stored and ingestion going on; "
        f"the procedure took {runbook_s:.0f} s; caught up {catch_up_s:.0f} s after the simulator "
        f"finished; {exp['valid']} valid and {len(exp['dead'])} dead letters exactly once")
