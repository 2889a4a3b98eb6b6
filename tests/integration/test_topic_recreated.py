"""A topic deleted and created again under the same name, while the store keeps its offsets: the
pipeline must refuse with a clear error instead of taking the new messages below the old marks for
ones it already stored."""

from confluent_kafka.admin import AdminClient

from waits import wait_for


def test_marks_past_the_end_of_a_recreated_topic_are_refused(tc, tmp_path):
    tc.migrate()
    tc.simulate("--devices", "20", "--count", "600", "--seed", "5")
    lake = str(tmp_path / "lake")
    tc.run(idle=2, extra=(f"lake.dir={lake}",))
    stored = tc.sql("SELECT count(*) FROM readings")[0][0]
    assert stored == 600

    admin = AdminClient({"bootstrap.servers": tc.brokers})
    for fut in admin.delete_topics([tc.topic], operation_timeout=30).values():
        fut.result()
    # The deletion settles (the broker no longer lists the topic) before the simulator creates it
    # again.
    wait_for(lambda: tc.topic not in admin.list_topics(timeout=10).topics, what="the topic's deletion")
    tc.simulate("--devices", "20", "--count", "60", "--seed", "6")
    proc = tc.cmd("run", "--exit-when-idle", "2", extra=(f"lake.dir={lake}",), check=False,
                  timeout=300)
    assert proc.returncode != 0
    assert "past the partition's end" in proc.stderr, proc.stderr[-3000:]
    assert tc.sql("SELECT count(*) FROM readings")[0][0] == stored
