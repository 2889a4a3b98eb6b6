"""Fixtures of the fault-injection suite. The suite stops and restarts Kafka and PostgreSQL, so it
runs against private instances of its own (state directory /var/lib/thermocline-faults, or
~/.cache/thermocline-faults for a normal user; Kafka on 127.0.0.1:29092, PostgreSQL on :25432),
never against the shared development services. The session starts them from an empty broker and
stops them at the end."""

import fcntl
import os

import pytest

from faultlib import SCALE, SCALE_NAME, Cluster, Pipeline, Services, log

# Whoever holds this lock owns the three-broker cluster (it is shared by everyone on the machine).
CLUSTER_LOCK = "/tmp/tc-cluster.lock"


@pytest.fixture(scope="session")
def services():
    s = Services()
    log(f"scale {SCALE_NAME}: {SCALE}; private services at {s.brokers} and port {s.pg_port} "
        f"(state {s.env['THERMOCLINE_STATE_DIR']})")
    # Leftover topics of an earlier session would only slow the broker's start down.
    s.dev("reset", "kafka")
    s.up()
    yield s
    if not os.environ.get("TC_FAULTS_KEEP_SERVICES"):
        s.down()


def _isolated(request, where):
    """A Pipeline of this test on `where` (Services or Cluster), dropped after it."""
    tag = request.node.name.split("[")[0].replace("test_", "")[:10].replace("_", "-")
    p = Pipeline(where, tag)
    yield p
    # A scenario that failed half-way may have left a service or a broker down: bring it back
    # for the next.
    where.up()
    if not os.environ.get("TC_FAULTS_KEEP_DATA"):
        p.drop()


@pytest.fixture
def pipeline(request, services):
    yield from _isolated(request, services)


@pytest.fixture(scope="module")
def cluster(services):
    """The three-broker cluster, started from empty data under /tmp/tc-cluster.lock and stopped
    (all three JVMs) after the module that uses it: it is too heavy for 2 cores to leave
    running while other scenarios run."""
    with open(CLUSTER_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        c = Cluster(services)
        c.dev("reset")
        up_s = c.up()
        log(f"cluster {c.brokers} started in {up_s:.1f} s")
        try:
            yield c
        finally:
            if not os.environ.get("TC_FAULTS_KEEP_SERVICES"):
                c.down()


@pytest.fixture
def cluster_pipeline(request, cluster):
    yield from _isolated(request, cluster)
