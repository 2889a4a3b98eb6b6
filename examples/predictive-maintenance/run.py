#!/usr/bin/env python3
"""Predictive maintenance on Thermocline's feature store, end to end.

A small simulated fleet with labelled sensor faults (stuck values and drifts, `thermocline simulate
--anomalies ... --truth FILE`) goes through the pipeline into the lake (and the quality monitor,
which writes its findings to PostgreSQL); `features build` computes hourly features per device:
the readings' aggregates and the monitor's findings of each metric (`anomalies`, which lift the
held-out ROC AUC from about 0.89 to about 0.92); the fault episodes become labels "was this device
faulty in the hour before T?"; `features training-set` joins them with the features as of T (point in time); a
scikit-learn model learns on some devices and is scored on the others (devices it never saw).

Prints one JSON line: rows, positives, the held-out ROC AUC and accuracy.

    eval "$(scripts/dev-services env)"
    examples/predictive-maintenance/run.py --work /tmp/pm --set kafka.topic=pm-demo \
        --set kafka.group=pm-demo --set postgres.schema=pm_demo
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

HOUR_US = 3600 * 1_000_000
METRICS = ("temperature", "humidity", "pressure", "battery")
AGGREGATES = ("mean", "std", "min", "max", "slope", "count")
# Hourly features of every metric: a stuck sensor flattens std and the range, a drift bends the
# slope and moves the mean; and what the quality monitor's detectors found in the hour (its
# findings of the metric: the quality sink runs with the pipeline).
DEFINITIONS = "\n".join([f"{m}_{a}_1h = {a}({m}, 1h)" for m in METRICS for a in AGGREGATES] +
                        [f"{m}_anomalies_1h = anomalies({m}, 1h)" for m in METRICS])
SINKS = "store,lake,quality"
FAULTS = ("stuck", "drift")


def thermocline(args, *argv, capture=True):
    cmd = [args.bin, *argv]
    for kv in args.set:
        cmd += ["--set", kv]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    print(f"thermocline {' '.join(argv[:2])}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return proc.stdout


def make_labels(truth_path, devices, first_us, last_us, out_path):
    """One label per device and hour boundary T: 1 when a fault episode of the device overlaps
    [T - 1 h, T), else 0. Returns (rows, positives)."""
    episodes = {}
    with open(truth_path) as f:
        for line in f:
            e = json.loads(line)
            if e["kind"] in FAULTS:
                episodes.setdefault(e["device"], []).append((e["start_us"], e["end_us"]))
    rows = positives = 0
    with open(out_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "time", "label"])
        # From the second hour on (the first has no closed window) to the last whole hour.
        t = (first_us // HOUR_US + 2) * HOUR_US
        while t <= last_us:
            for dev in devices:
                label = int(any(s < t and e >= t - HOUR_US for s, e in episodes.get(dev, ())))
                w.writerow([dev, t / 1e6, label])
                rows += 1
                positives += label
            t += HOUR_US
    return rows, positives


def train_and_score(training_path, test_share, seed):
    import numpy as np
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    t = pq.read_table(training_path).to_pandas()
    features = [c for c in t.columns if c not in ("device_id", "time", "label")]
    devices = sorted(t["device_id"].unique())
    rng = np.random.default_rng(seed)
    held_out = set(rng.choice(devices, size=max(1, int(len(devices) * test_share)), replace=False))
    test = t["device_id"].isin(held_out)
    # Gradient boosting takes missing features (a silent hour) as they are. One thread: the data
    # are small, and OpenMP threads fighting over a busy machine's cores cost more than they give.
    model = HistGradientBoostingClassifier(max_iter=60, random_state=seed)
    with threadpool_limits(1):
        model.fit(t.loc[~test, features], t.loc[~test, "label"].astype(int))
        p = model.predict_proba(t.loc[test, features])[:, 1]
    y = t.loc[test, "label"].astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "base_rate": float(y.mean()),
        "test_rows": int(test.sum()),
        "train_rows": int((~test).sum()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("THERMOCLINE_BIN", "thermocline"))
    ap.add_argument("--work", required=True, help="directory for the lake, labels and training set")
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--cadence-s", type=int, default=60)
    ap.add_argument("--anomalies", default="drift=0.15,stuck=0.05,spike=0.005")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for every command")
    args = ap.parse_args()

    os.makedirs(args.work, exist_ok=True)
    lake = os.path.join(args.work, "lake")
    truth = os.path.join(args.work, "truth.jsonl")
    labels = os.path.join(args.work, "labels.csv")
    training = os.path.join(args.work, "training.parquet")
    args.set = [*args.set, f"lake.dir={lake}", f"features.definitions={DEFINITIONS}",
                f"pipeline.sinks={SINKS}"]

    steps = args.hours * 3600 // args.cadence_s
    start_s = (int(time.time()) - args.hours * 3600) // 3600 * 3600
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_s))
    thermocline(args, "migrate")
    thermocline(args, "simulate", "--devices", str(args.devices), "--count", str(args.devices * steps),
                "--start", start, "--cadence-ms", str(args.cadence_s * 1000), "--seed", str(args.seed),
                "--anomalies", args.anomalies, "--truth", truth)
    thermocline(args, "run", "--exit-when-idle", "3")
    thermocline(args, "features", "build")

    devices = [f"sensor-{i:05d}" for i in range(args.devices)]
    last_us = (start_s + steps * args.cadence_s) * 1_000_000
    rows, positives = make_labels(truth, devices, start_s * 1_000_000, last_us, labels)
    thermocline(args, "features", "training-set", "--labels", labels, "--out", training)
    score = train_and_score(training, 0.3, args.seed)
    print(json.dumps({"labels": rows, "positives": positives, **score}))


if __name__ == "__main__":
    main()
