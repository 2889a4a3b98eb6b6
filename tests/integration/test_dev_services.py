"""scripts/dev-services' own logic, below the services it starts: its functions are taken out of
the script and run against files of the test's making, with the commands around them (ports,
processes) stood in for. Nothing here needs Kafka or PostgreSQL."""

import os
import re
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "dev-services")


def shell_function(name):
    """The text of the shell function NAME in scripts/dev-services."""
    with open(SCRIPT) as f:
        text = f.read()
    m = re.search(r"^" + re.escape(name) + r"\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert m, f"scripts/dev-services has no function {name}"
    return m.group(0)


def test_a_node_is_ready_however_much_it_logged_after_starting(tmp_path):
    """kafka_wait reads the node's log from where this start began: a node that logged "Kafka
    Server started" and then far more than a pipe holds (a cluster's nodes are waited for in
    turn, each logging on meanwhile) is ready at the first look. Under pipefail a `tail | grep -q`
    failed there (tail killed by SIGPIPE) at every look, until the start timeout."""
    log = tmp_path / "kafka.log"
    with open(log, "w") as f:
        f.write("[2026-12-05 10:00:00,000] INFO [KafkaRaftServer nodeId=1] Kafka Server started\n")
        f.write(("[2026-12-05 10:00:01,000] INFO more of what a node logs " + "x" * 40 + "\n")
                * 20000)
    script = "\n".join([
        "set -euo pipefail",
        "port_open() { return 0; }",
        "pid_alive() { return 0; }",
        "kafka_pid() { echo 4242; }",
        "kafka_stop() { :; }",
        'kafka_fail() { echo "kafka_fail: $1" >&2; exit 1; }',
        'log() { echo "$*" >&2; }',
        f"KAFKA_LOG={log} KAFKA_LOG_OFFSET=0 KAFKA_START=$SECONDS KAFKA_START_TIMEOUT=5",
        f"KAFKA_PIDFILE={tmp_path}/none.pid KAFKA_PORT=1",
        shell_function("kafka_wait"),
        "kafka_wait",
        "echo ready",
    ])
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ready", proc.stderr[-2000:]
    assert "Kafka ready in 0s (pid 4242)" in proc.stderr, proc.stderr[-2000:]
