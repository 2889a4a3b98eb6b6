"""A topic with more partitions than one batch tracks (pipeline.partitions_per_batch, lowered here
from its 4,096 so that the topic stays small; the code path is the production one): a reading of
one partition too many makes the batch go to a writer first. Nothing is cut off: every reading is
in the store and the lake exactly once, and every partition's offset is at its end."""

import os

import pyarrow.dataset as ds

from test_pipeline import assert_store_matches

COUNT = 6000
CAP = 5


def test_more_partitions_than_a_batch_tracks(tc, tmp_path):
    tc.partitions = 12
    lake = str(tmp_path / "lake")
    tc.migrate()
    summary = tc.simulate("--devices", "500", "--count", str(COUNT), "--invalid-ratio", "0.01",
                          "--seed", "7")
    assert summary["produced"] == COUNT
    # Batches large and slow to time out: without the cap each would hold every partition.
    proc = tc.run(idle=3, extra=(f"pipeline.partitions_per_batch={CAP}",
                                 "pipeline.batch_size=5000", "pipeline.batch_timeout_ms=2000",
                                 f"lake.dir={lake}"))
    assert f"a batch holds readings of {CAP} partitions" in proc.stderr, proc.stderr[-4000:]
    exp = tc.oracle().expect()
    assert len([q for q, e in exp["ends"].items() if e > 0]) > CAP, exp["ends"]
    assert_store_matches(tc, exp)
    t = ds.dataset(os.path.join(lake, "telemetry"), format="parquet", partitioning="hive").to_table()
    keys = set(zip(t.column("kafka_partition").to_pylist(), t.column("kafka_offset").to_pylist()))
    assert t.num_rows == len(keys) == exp["valid"], (t.num_rows, len(keys), exp["valid"])
    assert keys == set(tc.sql("SELECT kafka_partition, kafka_offset FROM readings"))
