"""Encrypted Parquet files of Thermocline's writer (Parquet modular encryption, src/lake/
parquet_crypt.h) read by pyarrow through its CryptoFactory and a KMS client holding the master
keys: the random cases of tc_parquet_gen (every type, codec, page and row-group shape), written
with the footer and even columns under one master key and the odd columns under another, read
value for value with their statistics, exactly as the plain cases are. Without the keys, with a
wrong key, or with only the footer key for a column under its own key, pyarrow refuses.

The number of cases is TC_INTEROP_CRYPT_CASES (default 30).
"""

import os
import pathlib
import sys

import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
pytest.importorskip("cryptography", reason="cryptography is not installed (tests/requirements.txt)")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from lake_kms import decryption_properties, new_keys, read_table, write_key_file  # noqa: E402
from test_parquet_interop import SEED0, check_pyarrow, generate  # noqa: E402

CASES = int(os.environ.get("TC_INTEROP_CRYPT_CASES", "30"))
FOOTER, COLUMN = "footer_key", "column_key"  # the ids tc_parquet_gen --key-file uses


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    k = new_keys(FOOTER, COLUMN, size=16)
    path = write_key_file(tmp_path_factory.mktemp("keys") / "keys", k)
    return k, path


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + CASES))
def test_encrypted_case(gen_tool, tmp_path, keys, seed):
    k, key_file = keys
    path, exp = generate(gen_tool, tmp_path, seed, extra=("--key-file", key_file))
    with open(path, "rb") as f:
        assert f.read(4) == b"PARE"
    check_pyarrow(seed, path, exp, decryption_properties(k))

    with pytest.raises(OSError):
        pq.read_table(path)
    wrong = dict(k)
    wrong[FOOTER] = bytes(16)
    with pytest.raises(Exception):
        read_table(path, wrong)
    names = [c["name"] for c in exp["columns"]]
    if len(names) > 1 and exp["nrows"] > 0:
        footer_only = {FOOTER: k[FOOTER]}
        # Even columns are under the footer key; odd ones need theirs.
        assert read_table(path, footer_only, columns=[names[0]]).num_rows == exp["nrows"]
        with pytest.raises(Exception):
            read_table(path, footer_only, columns=[names[1]])
