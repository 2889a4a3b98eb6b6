#!/usr/bin/env python3
"""Compare the size of Thermocline's Parquet files with pyarrow's for the same telemetry rows.

bench_parquet writes 1,000,000 telemetry rows (10,000 devices, smooth sensor values) with
Thermocline's writer; this script reads that file back with pyarrow -- so both writers get exactly
the same rows -- and writes it again with pyarrow: same codec, dictionary for device_id only (as
Thermocline does), statistics on, one row group. It also writes pyarrow's default (dictionary for
every column) against Thermocline with dictionary_numbers on (bench_parquet --dict-numbers), and
times pyarrow's writes. The target is Thermocline within 10% of pyarrow's size in both pairings;
the exit status is 0 when both are.

Usage: bench/parquet_vs_pyarrow.py [--build build] [--rows 1000000] [--codec snappy|zstd|none]
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory holding bench/bench_parquet")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--codec", default="snappy", choices=["snappy", "zstd", "none"])
    args = ap.parse_args()

    bench = pathlib.Path(args.build)
    if not bench.is_absolute():
        bench = ROOT / bench
    bench = bench / "bench" / "bench_parquet"
    if not bench.exists():
        sys.exit(f"{bench} not found: build first (ninja -C {args.build})")
    pa_codec = {"snappy": "snappy", "zstd": "zstd", "none": "none"}[args.codec]

    with tempfile.TemporaryDirectory() as tmp:
        ours = os.path.join(tmp, "thermocline.parquet")
        ours_all = os.path.join(tmp, "thermocline-dict-all.parquet")
        for path, extra in ((ours, []), (ours_all, ["--dict-numbers"])):
            subprocess.run(
                [str(bench), str(args.rows), "--codec", args.codec, "--out", path] + extra,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        table = pq.read_table(ours)
        assert table.num_rows == args.rows
        assert pq.read_table(ours_all).equals(table)

        sizes, secs = {}, {}
        for name, use_dict in (("device_id", ["device_id"]), ("all", True)):
            path = os.path.join(tmp, f"pyarrow-{name}.parquet")
            t0 = time.perf_counter()
            pq.write_table(
                table,
                path,
                compression=pa_codec,
                use_dictionary=use_dict,
                row_group_size=1 << 20,
                write_statistics=True,
                # Thermocline writes no Arrow schema; do not count pyarrow's copy of it either.
                store_schema=False,
            )
            secs[name] = time.perf_counter() - t0
            sizes[name] = path

        print(f"rows: {args.rows}, codec: {args.codec}, pyarrow {pa.__version__}")
        ok = True
        for label, mine, theirs in (
            ("dictionary for device_id only", ours, sizes["device_id"]),
            ("dictionary for every column", ours_all, sizes["all"]),
        ):
            a, b = os.path.getsize(mine), os.path.getsize(theirs)
            ratio = a / b
            within = abs(ratio - 1) <= 0.10
            ok = ok and within
            print(
                f"{label:30s} thermocline {a / 1e6:7.2f} MB  pyarrow {b / 1e6:7.2f} MB  "
                f"ratio {ratio:.3f} ({'within' if within else 'OUTSIDE'} 10%)"
            )
        print(f"pyarrow write time: {secs['device_id']:.3f} s (dict=device_id), {secs['all']:.3f} s (dict=all)")
        # Per-column sizes show where a difference comes from.
        print(f"{'column':18s} {'ours':>10s} {'pyarrow':>10s} {'ours/all':>10s} {'pa/all':>10s}")
        mds = [pq.ParquetFile(p).metadata for p in (ours, sizes["device_id"], ours_all, sizes["all"])]
        for c in range(mds[0].num_columns):
            col = [sum(md.row_group(g).column(c).total_compressed_size for g in range(md.num_row_groups)) for md in mds]
            print(f"{mds[0].schema.column(c).name:18s} " + " ".join(f"{v:10d}" for v in col))
        return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
