"""Thermocline's Parquet writer against independent readers: pyarrow, DuckDB and parquet-java.

Each case is drawn from a seed by tests/tools/tc_parquet_gen, which writes the Parquet file and a
JSON file of the values it wrote (schema, options, row-group flush points, key-value metadata).
For every case we check, with each reader, every value and every type; with pyarrow also the file
metadata: row count, row groups (sizes within the option, explicit flushes honoured), created_by
in the "<app> version <semver> (build <hash>)" form, key-value metadata, codec, and the column-chunk
statistics (null_count; min/max by the spec's rules: NaN excluded, -0.0/+0.0 for zero bounds,
unsigned byte order and spec-conformant truncation for strings; distinct_count when present).
DuckDB is also asked equality-filtered counts, which prune row groups by our statistics: a wrong
min/max there loses rows. The generator also runs the deep verifier (--verify) on each file.

The number of cases is TC_INTEROP_CASES (default 100, about half a minute; the full run uses 1000).
"""

import json
import math
import os
import re
import struct
import subprocess
import warnings

import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install -r tests/interop/requirements.txt)")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow.parquet is not installed")
duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -r tests/interop/requirements.txt)")

CASES = int(os.environ.get("TC_INTEROP_CASES", "100"))
SEED0 = int(os.environ.get("TC_INTEROP_SEED", "0"))
JAVA_CASES = int(os.environ.get("TC_INTEROP_JAVA_CASES", "20"))

CREATED_BY = re.compile(r"^thermocline version (\d+)\.(\d+)\.(\d+) \(build [0-9A-Za-z._-]+\)$")

ARROW_TYPES = {
    "boolean": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "timestamp_us": pa.timestamp("us", tz="UTC"),
}
PHYSICAL = {
    "boolean": "BOOLEAN",
    "int32": "INT32",
    "int64": "INT64",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "BYTE_ARRAY",
    "bytes": "BYTE_ARRAY",
    "timestamp_us": "INT64",
}
DUCK_TYPES = {
    "boolean": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "bytes": "BLOB",
    "timestamp_us": "TIMESTAMP WITH TIME ZONE",
}
CODECS = {"snappy": "SNAPPY", "zstd": "ZSTD", "uncompressed": "UNCOMPRESSED"}


# ---- helpers ----


def generate(gen_tool, tmp_path, seed, extra=()):
    pq_path = tmp_path / f"case{seed}.parquet"
    js_path = tmp_path / f"case{seed}.json"
    res = subprocess.run(
        [str(gen_tool), "--seed", str(seed), "--out", str(pq_path), "--expect", str(js_path), "--verify", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, f"seed {seed}: tc_parquet_gen failed: {res.stderr}"
    # The generator must be quiet on success (sanitizer reports would land on stderr).
    assert res.stderr == "", f"seed {seed}: tc_parquet_gen wrote to stderr: {res.stderr[:2000]}"
    with open(js_path, encoding="utf-8") as f:
        exp = json.load(f)
    for col in exp["columns"]:
        if col["type"] == "bytes":
            col["values"] = [None if v is None else bytes.fromhex(v) for v in col["values"]]
    return pq_path, exp


def same(typ, want, got):
    if want is None or got is None:
        return want is None and got is None
    if typ in ("float", "double"):
        if math.isnan(want):
            return isinstance(got, float) and math.isnan(got)
        # Bit-exact, so -0.0 and +0.0 differ.
        return isinstance(got, float) and struct.pack("<d", want) == struct.pack("<d", got)
    if typ == "boolean":
        return got is want
    return type(got) is type(want) and got == want


def assert_column(reader, seed, col, got):
    want = col["values"]
    assert len(got) == len(want), f"{reader} seed {seed} column {col['name']}: {len(got)} values, want {len(want)}"
    for r, (w, g) in enumerate(zip(want, got)):
        if not same(col["type"], w, g):
            pytest.fail(
                f"{reader} seed {seed} column {col['name']} ({col['type']}) row {r}: got {g!r:.200}, want {w!r:.200}"
            )


def as_bytes(col, v):
    return v.encode("utf-8") if col["type"] == "string" else v


def trunc_min(b, limit, is_str):
    """The writer's lower bound for a long BYTE_ARRAY minimum (a prefix, UTF-8-safe for strings)."""
    if not limit or len(b) <= limit:
        return b, True
    cut = limit
    if is_str:
        while cut > 0 and (b[cut] & 0xC0) == 0x80:
            cut -= 1
    return b[:cut], False


def trunc_max(b, limit, is_str):
    """The writer's upper bound for a long maximum: prefix with its last incrementable byte + 1."""
    if not limit or len(b) <= limit:
        return b, True
    cut = limit
    if is_str:
        while cut > 0 and (b[cut] & 0xC0) == 0x80:
            cut -= 1
    top = 0x7F if is_str else 0xFF
    k = cut
    while k > 0 and b[k - 1] >= top:
        k -= 1
    if k == 0:
        return None, False
    return b[: k - 1] + bytes([b[k - 1] + 1]), False


def check_stats(seed, exp, col, cm, rows):
    """Column-chunk statistics of one row group against the values it holds."""
    typ = col["type"]
    where = f"seed {seed} column {col['name']} ({typ})"
    st = cm.statistics
    assert st is not None and cm.is_stats_set, f"{where}: no statistics"
    present = [v for v in rows if v is not None]
    assert st.null_count == len(rows) - len(present), f"{where}: null_count {st.null_count}"
    if typ in ("float", "double"):
        present = [v for v in present if not math.isnan(v)]
    if typ in ("string", "bytes"):
        present = [as_bytes(col, v) for v in present]
    if not present:
        assert not st.has_min_max, f"{where}: min/max written without a non-NaN value"
        return
    mn, mx = min(present), max(present)
    if typ in ("string", "bytes"):
        limit = exp["options"]["stats_max_bytes"]
        tmin, _ = trunc_min(mn, limit, typ == "string")
        tmax, _ = trunc_max(mx, limit, typ == "string")
        if tmax is None:
            assert not st.has_min_max, f"{where}: max written though no valid shorter bound exists"
            return
        assert st.has_min_max, f"{where}: no min/max"
        got_min = as_bytes(col, st.min_raw) if isinstance(st.min_raw, str) else st.min_raw
        got_max = as_bytes(col, st.max_raw) if isinstance(st.max_raw, str) else st.max_raw
        assert got_min == tmin, f"{where}: min {got_min!r:.100} want {tmin!r:.100}"
        assert got_max == tmax, f"{where}: max {got_max!r:.100} want {tmax!r:.100}"
        assert got_min <= mn and got_max >= mx
        if typ == "string":
            got_min.decode("utf-8")
            got_max.decode("utf-8")
    else:
        assert st.has_min_max, f"{where}: no min/max"
        gmin, gmax = st.min_raw, st.max_raw
        if typ in ("float", "double"):
            assert gmin == mn and gmax == mx, f"{where}: min/max {gmin}/{gmax} want {mn}/{mx}"
            # TYPE_ORDER rule: a zero min is written -0.0, a zero max +0.0.
            if mn == 0:
                assert math.copysign(1.0, gmin) < 0, f"{where}: zero min not written as -0.0"
            if mx == 0:
                assert math.copysign(1.0, gmax) > 0, f"{where}: zero max not written as +0.0"
        else:
            assert gmin == mn and gmax == mx, f"{where}: min/max {gmin!r}/{gmax!r} want {mn!r}/{mx!r}"
    if st.has_distinct_count:
        assert st.distinct_count == len(set(present)), f"{where}: distinct_count {st.distinct_count}"


def read_pyarrow(path, decryption_properties=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = pq.read_table(path, decryption_properties=decryption_properties)
        pf = pq.ParquetFile(path, decryption_properties=decryption_properties)
        md = pf.metadata
        schema = pf.schema_arrow
    assert not caught, f"pyarrow warned: {[str(w.message) for w in caught]}"
    return table, md, schema


def check_pyarrow(seed, path, exp, decryption_properties=None):
    table, md, schema = read_pyarrow(path, decryption_properties)
    cols = exp["columns"]
    nrows = exp["nrows"]
    assert table.num_rows == nrows and md.num_rows == nrows
    assert table.num_columns == len(cols)
    m = CREATED_BY.match(md.created_by or "")
    assert m, f"created_by {md.created_by!r} not in '<app> version <semver> (build <hash>)' form"
    assert md.created_by == exp["created_by"]
    # Key-value metadata: exactly what the writer was given (a missing value reads as empty).
    kv = {k.encode(): (v or "").encode() for k, v in exp["kv"]}
    assert (md.metadata or {}) == kv, f"seed {seed}: key-value metadata {md.metadata} want {kv}"

    for i, col in enumerate(cols):
        field = schema.field(i)
        assert field.name == col["name"]
        assert field.type == ARROW_TYPES[col["type"]], f"seed {seed}: {col['name']} type {field.type}"
        assert field.nullable == col["optional"], f"seed {seed}: {col['name']} nullability"
        arr = table.column(i)
        if col["type"] == "timestamp_us":
            arr = arr.cast(pa.int64())
        assert_column("pyarrow", seed, col, arr.to_pylist())

    # Row groups: sizes within the option, every explicit flush a boundary, sizes summing up.
    opt = exp["options"]
    if nrows == 0:
        assert md.num_row_groups == 0
    bounds, at = set(), 0
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        assert 0 < rg.num_rows <= opt["row_group_rows"], f"seed {seed}: row group {g} has {rg.num_rows} rows"
        for i, col in enumerate(cols):
            cm = rg.column(i)
            assert cm.path_in_schema == col["name"]
            assert cm.physical_type == PHYSICAL[col["type"]]
            assert cm.compression == CODECS[opt["codec"]]
            assert cm.num_values == rg.num_rows
            check_stats(seed, exp, col, cm, col["values"][at : at + rg.num_rows])
        at += rg.num_rows
        bounds.add(at)
    assert at == nrows
    for f in exp["flush_at"]:
        assert f in bounds, f"seed {seed}: explicit flush at row {f} is not a row-group boundary"


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def check_duckdb(seed, path, exp):
    cols = exp["columns"]
    con = duckdb.connect()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            desc = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            sel = ", ".join(
                f"epoch_us({quote(c['name'])})" if c["type"] == "timestamp_us" else quote(c["name"]) for c in cols
            )
            rows = con.execute(f"SELECT {sel} FROM read_parquet(?)", [str(path)]).fetchall()
            count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
        assert not caught, f"duckdb warned: {[str(w.message) for w in caught]}"
        assert count == exp["nrows"] and len(rows) == exp["nrows"]
        assert [d[0] for d in desc] == [c["name"] for c in cols]
        for i, col in enumerate(cols):
            assert desc[i][1] == DUCK_TYPES[col["type"]], f"seed {seed}: duckdb type {desc[i][1]} for {col['type']}"
            assert_column("duckdb", seed, col, [r[i] for r in rows])
        # Filtered counts: DuckDB skips row groups (and pages) whose statistics exclude the value.
        for col in cols:
            if col["type"] not in ("int32", "int64", "string", "bytes", "boolean", "double"):
                continue
            vals = [v for v in col["values"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            for probe in vals[:1] + vals[-1:] + vals[len(vals) // 2 : len(vals) // 2 + 1]:
                want = sum(1 for v in col["values"] if v is not None and v == probe)
                got = con.execute(
                    f"SELECT count(*) FROM read_parquet(?) WHERE {quote(col['name'])} = ?", [str(path), probe]
                ).fetchone()[0]
                assert got == want, f"seed {seed}: duckdb count where {col['name']} = {probe!r:.80}: {got}, want {want}"
    finally:
        con.close()


# ---- tests ----


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + CASES))
def test_random_case(gen_tool, tmp_path, seed):
    path, exp = generate(gen_tool, tmp_path, seed)
    check_pyarrow(seed, path, exp)
    check_duckdb(seed, path, exp)


def test_parquet_java(gen_tool, java_reader, tmp_path):
    """parquet-java's example Group API reads a subset of the cases value for value."""
    seeds = list(range(SEED0, SEED0 + min(CASES, JAVA_CASES)))
    cases = [generate(gen_tool, tmp_path, s) for s in seeds]
    res = subprocess.run(
        java_reader + [str(p) for p, _ in cases], capture_output=True, text=True, encoding="utf-8", timeout=600
    )
    assert res.returncode == 0, f"parquet-java failed: {res.stderr[-4000:]}"
    # log4j/slf4j chatter on stderr would mean a warning; slf4j-nop keeps it silent.
    assert res.stderr.strip() == "", f"parquet-java wrote to stderr: {res.stderr[:2000]}"
    lines = res.stdout.splitlines()
    pos = 0
    for seed, (path, exp) in zip(seeds, cases):
        head = json.loads(lines[pos])
        pos += 1
        assert head["file"] == str(path)
        assert head["rows"] == exp["nrows"]
        assert head["created_by"] == exp["created_by"]
        rows = [json.loads(line) for line in lines[pos : pos + exp["nrows"]]]
        pos += exp["nrows"]
        for i, col in enumerate(exp["columns"]):
            got = [r[i] for r in rows]
            if col["type"] == "bytes":
                got = [None if v is None else bytes.fromhex(v) for v in got]
            elif col["type"] in ("float", "double"):
                got = [None if v is None else float(v) for v in got]
            assert_column("parquet-java", seed, col, got)
    assert pos == len(lines)
