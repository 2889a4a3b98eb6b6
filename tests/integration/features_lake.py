"""Helpers of the feature store's tests: a lake written by hand (pyarrow, the lake's layout) where a
test needs exact control of the readings, and the independent pandas computation every offline
feature is compared with.

The reference computes each aggregate the textbook way with pandas' group-by, in two passes where
the formula has two (pandas' std with ddof=1, the slope as sum((t - mean t)(x - mean x)) /
sum((t - mean t)^2)), never with the accumulator's update formulas, so a mistake in those shows
up.
"""

import math
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

US = 1_000_000
WINDOW_S = {"m": 60, "h": 3600, "d": 86400}
# |feature - pandas| <= TOLERANCE * max(1, |pandas|): a few ulps of the values' scale, far below any
# difference a wrong formula makes, and above what summing in another order costs.
TOLERANCE = 1e-9

LAKE_METRICS = ("temperature", "humidity", "pressure", "battery", "latitude", "longitude")


def parse_defs(text):
    """features.definitions as (name, aggregate, metric, window seconds, lo, hi) tuples, by a
    parser of its own (a regular expression), not the one under test."""
    import re
    out = []
    for part in re.split(r"[;\n]", text):
        part = part.split("#")[0].strip()
        if not part:
            continue
        m = re.fullmatch(r"(\w+)\s*=\s*(\w+)\(\s*(?:(\w+)\s*,\s*)?(\d+)([mhd])\s*((?:,\s*(?:min|max)=[^,)]+)*)\)", part)
        assert m, part
        lo, hi = -math.inf, math.inf
        for kv in re.findall(r"(min|max)=([^,)\s]+)", m.group(6) or ""):
            if kv[0] == "min":
                lo = float(kv[1])
            else:
                hi = float(kv[1])
        out.append((m.group(1), m.group(2), m.group(3) or "", int(m.group(4)) * WINDOW_S[m.group(5)], lo, hi))
    return out


def write_lake_file(root, topic, partition, first_offset, rows, metrics=("temperature", "humidity")):
    """One committed lake file of rows (time_us, device_id, {metric: value or None}), all of one
    UTC day, under <root>/telemetry/year=/month=/day=, named as the lake sink names it."""
    assert rows
    day = rows[0][0] // (86400 * US)
    assert all(r[0] // (86400 * US) == day for r in rows), "one day per file"
    y, m, d = _civil(day)
    dirname = os.path.join(root, "telemetry", f"year={y:04d}", f"month={m:02d}", f"day={d:02d}")
    os.makedirs(dirname, exist_ok=True)
    cols = {
        "time": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
        "device_id": pa.array([r[1] for r in rows], pa.string()),
    }
    for metric in metrics:
        cols[metric] = pa.array([r[2].get(metric) for r in rows], pa.float64())
    cols["kafka_partition"] = pa.array([partition] * len(rows), pa.int32())
    cols["kafka_offset"] = pa.array(range(first_offset, first_offset + len(rows)), pa.int64())
    last = first_offset + len(rows) - 1
    path = os.path.join(dirname, f"part-{topic}-p{partition}-{first_offset}-{last}.parquet")
    pq.write_table(pa.table(cols), path)
    return path


def _civil(day):
    import datetime
    d = datetime.date(1970, 1, 1) + datetime.timedelta(days=int(day))
    return d.year, d.month, d.day


def lake_frame(root):
    """The lake's readings as a pandas frame with the event time in µs (column tus), in the order
    the build reads them (files by name within a day, rows in file order)."""
    frames = []
    for path in sorted(_lake_files(root)):
        t = pq.read_table(path)
        t = t.append_column("tus", pc.cast(t.column("time"), pa.int64()))
        frames.append(t.drop_columns([c for c in t.column_names if c == "time"]).to_pandas())
    import pandas as pd
    return pd.concat(frames, ignore_index=True)


def _lake_files(root):
    base = os.path.join(root, "telemetry")
    for dirpath, _dirs, files in os.walk(base):
        for f in files:
            if f.endswith(".parquet") and (f.startswith("part-") or f.startswith("compact-")):
                yield os.path.join(dirpath, f)


def reference(df, defn):
    """{(device_id, window_start_us): value or NaN} of one definition, computed with pandas'
    group-by over the readings (two passes where the formula has two)."""
    name, agg, metric, window_s, lo, hi = defn
    w = window_s * US
    x = df[metric] if metric in df.columns else np.full(len(df), np.nan)
    frame = df[["device_id", "tus"]].copy()
    frame["x"] = np.asarray(x, dtype="float64")
    frame["ws"] = (frame["tus"] // w) * w
    keys = ["device_id", "ws"]
    g = frame.groupby(keys, sort=False)["x"]
    if agg == "count":
        v = g.count().astype("float64")
    elif agg == "mean":
        v = g.mean()
    elif agg == "std":
        v = g.std(ddof=1)
    elif agg == "min":
        v = g.min()
    elif agg == "max":
        v = g.max()
    elif agg == "last":
        # Latest time; on equal times the one read last (a stable sort keeps the read order).
        v = frame.sort_values("tus", kind="stable").groupby(keys, sort=False)["x"].last()
    elif agg == "slope":
        f = frame.dropna(subset=["x"]).copy()
        f["t"] = (f["tus"] - f["ws"]) / 1e6
        gf = f.groupby(keys, sort=False)
        f["dt"] = f["t"] - gf["t"].transform("mean")
        f["dx"] = f["x"] - gf["x"].transform("mean")
        f["stx"] = f["dt"] * f["dx"]
        f["stt"] = f["dt"] * f["dt"]
        sums = f.groupby(keys, sort=False)[["stx", "stt"]].sum()
        n = f.groupby(keys, sort=False)["x"].count()
        v = (sums["stx"] / sums["stt"]).where((n >= 2) & (sums["stt"] > 0))
        v = v.reindex(g.size().index)
    elif agg == "share_missing":
        v = 1.0 - g.count() / g.size()
    elif agg == "out_of_range":
        frame["a"] = ((frame["x"] < lo) | (frame["x"] > hi)).astype("float64")
        v = frame.groupby(keys, sort=False)["a"].sum()
    else:
        raise AssertionError(agg)
    return {(dev, int(ws)): float(val) for (dev, ws), val in v.items()}


# The features read from the quality monitor's tables (quality_src.h), not from the readings.
QUALITY_AGGS = ("anomalies", "late", "out_of_order", "dead_letters", "duplicates", "gaps", "gap_max_s",
                "delay_p50_ms", "delay_p99_ms")
QUALITY_SUMS = ("late", "out_of_order", "dead_letters", "duplicates", "gaps")


class QualityTables:
    """The quality monitor's rows as they are in PostgreSQL (quality_1m per device and minute, the
    findings of anomalies), read once, for the reference of the quality features."""

    def __init__(self, tc):
        self.minutes = pd.DataFrame(tc.sql(
            "SELECT device_id, (extract(epoch FROM bucket) * 1000000)::bigint, late, out_of_order,"
            " dead_letters, duplicates, gaps, gap_max_s,"
            # From bucket 0 (stored from its first bucket that counts: docs/quality.md).
            " ARRAY(SELECT coalesce(delay_sketch[i], 0)"
            " FROM generate_series(1, array_upper(delay_sketch, 1)) AS i) FROM quality_1m"),
            columns=["device_id", "tus", *QUALITY_SUMS, "gap_max_s", "sketch"])
        self.findings = pd.DataFrame(tc.sql(
            "SELECT device_id, metric, (extract(epoch FROM start_time) * 1000000)::bigint,"
            " (extract(epoch FROM end_time) * 1000000)::bigint FROM anomalies"),
            columns=["device_id", "metric", "start", "end"])


def sketch_quantile(sketches, q):
    """The quantile of delay sketches merged (docs/quality.md): bucket 1 is [0, 1) ms, shown as
    0.5; bucket i > 1 has the geometric middle 2^((2(i-1)-1)/8) ms. None when empty."""
    merged = []
    for s in sketches:
        if s is None:
            continue
        merged += [0] * (len(s) - len(merged))
        for i, v in enumerate(s):
            merged[i] += v or 0
    total = sum(merged)
    if total == 0:
        return None
    want, run = max(1, math.ceil(q * total)), 0
    for i, v in enumerate(merged, start=1):
        run += v
        if run >= want:
            return 0.5 if i == 1 else 2 ** ((2.0 * (i - 1) - 1.0) / 8.0)
    raise AssertionError("unreachable")


def quality_reference(tables, windows, defn):
    """{(device_id, window_start_us): value or NaN} of a quality feature over the given windows
    (those where the device has readings), from the tables with pandas: sums of the window's
    minutes (0 without any), the longest gap and the merged sketch's quantiles (NaN without any),
    and the findings of the metric overlapping the window."""
    name, agg, metric, window_s, _lo, _hi = defn
    w = window_s * US
    out = {}
    if agg == "anomalies":
        f = tables.findings[tables.findings["metric"] == metric]
        by_dev = {dev: g for dev, g in f.groupby("device_id")}
        for dev, ws in windows:
            g = by_dev.get(dev)
            if g is None:
                out[(dev, ws)] = 0.0
                continue
            ends = g["end"].astype("float64").fillna(math.inf)
            out[(dev, ws)] = float(((g["start"] < ws + w) & (ends >= ws)).sum())
        return out
    m = tables.minutes.copy()
    m["ws"] = (m["tus"] // w) * w
    groups = {k: g for k, g in m.groupby(["device_id", "ws"])}
    for key in windows:
        g = groups.get(key)
        if agg in QUALITY_SUMS:
            v = 0.0 if g is None else float(g[agg].sum())
        elif agg == "gap_max_s":
            v = math.nan if g is None or g["gap_max_s"].isna().all() else float(g["gap_max_s"].max())
        else:
            q = sketch_quantile([] if g is None else list(g["sketch"]), 0.5 if agg == "delay_p50_ms" else 0.99)
            v = math.nan if q is None else q
        out[key] = v
    return out


def feature_table(features_dir, name):
    """{(device_id, window_start_us): value or NaN} of a built feature, plus its raw table."""
    t = ds.dataset(os.path.join(features_dir, name), format="parquet", partitioning="hive").to_table()
    starts = pc.cast(t.column("window_start"), pa.int64()).to_pylist()
    ends = pc.cast(t.column("window_end"), pa.int64()).to_pylist()
    out = {}
    for dev, s, e, v in zip(t.column("device_id").to_pylist(), starts, ends, t.column("value").to_pylist()):
        assert (dev, s) not in out, f"{name}: window {dev} {s} twice"
        out[(dev, s)] = math.nan if v is None else v
        assert e > s
    return out, t


def assert_features_equal_reference(features_dir, df, defs, quality=None):
    """Every built feature equals pandas' figure within TOLERANCE; the windows are the same. quality:
    the QualityTables of the quality features."""
    checked = 0
    for defn in defs:
        name = defn[0]
        if defn[1] in QUALITY_AGGS:
            w = defn[3] * US
            windows = set(zip(df["device_id"], (df["tus"] // w * w).astype("int64").tolist()))
            want = quality_reference(quality, windows, defn)
        else:
            want = reference(df, defn)
        got, _ = feature_table(features_dir, name)
        assert set(got) == set(want), (
            f"{name}: windows differ: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing")
        for key, w in want.items():
            g = got[key]
            if math.isnan(w):
                assert math.isnan(g), f"{name} {key}: {g}, pandas says undefined"
            else:
                assert not math.isnan(g), f"{name} {key}: undefined, pandas says {w}"
                assert abs(g - w) <= TOLERANCE * max(1.0, abs(w)), f"{name} {key}: {g!r} != pandas {w!r}"
            checked += 1
    return checked
