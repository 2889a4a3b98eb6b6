"""Fixtures of the Parquet interop tests: where the C tools are, and the parquet-java reader.

The tests compare files written by Thermocline's own Parquet writer (src/lake/) with what
independent readers make of them. Environment:

  TC_BUILD_DIR        build directory holding tools/tc_parquet_gen (default: build-asan, then build)
  TC_PARQUET_GEN      explicit path of tc_parquet_gen (overrides TC_BUILD_DIR)
  TC_INTEROP_CASES    random cases per reader (default 100; the full run uses 1000)
  TC_INTEROP_SEED     first seed (default 0)
  TC_INTEROP_JAVA     0 = skip the parquet-java check (default: run it when java and mvn exist)
  TC_INTEROP_JAVA_CASES  cases read by parquet-java (default 20)

Every warning is an error here: a reader that warns about our files fails the test.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
JAVA_DIR = pathlib.Path(__file__).resolve().parent / "java"


def pytest_configure(config):
    # Same effect as `pytest -W error`, for these tests, whatever the command line says.
    config.addinivalue_line("filterwarnings", "error")


def _find_gen():
    explicit = os.environ.get("TC_PARQUET_GEN")
    if explicit:
        return pathlib.Path(explicit)
    dirs = [os.environ["TC_BUILD_DIR"]] if os.environ.get("TC_BUILD_DIR") else ["build-asan", "build"]
    for d in dirs:
        p = pathlib.Path(d)
        if not p.is_absolute():
            p = ROOT / p
        cand = p / "tools" / "tc_parquet_gen"
        if cand.exists():
            return cand
    return None


@pytest.fixture(scope="session")
def gen_tool():
    p = _find_gen()
    if p is None or not p.exists():
        pytest.fail(
            "tc_parquet_gen not found: build first (ninja -C build-asan) or set TC_BUILD_DIR / TC_PARQUET_GEN"
        )
    return p


@pytest.fixture(scope="session")
def java_reader():
    """Command prefix that runs the parquet-java Dump class, built once per session."""
    if os.environ.get("TC_INTEROP_JAVA", "1") == "0":
        pytest.skip("parquet-java check disabled (TC_INTEROP_JAVA=0)")
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        pytest.skip("parquet-java check needs java and mvn on PATH")
    res = subprocess.run(
        [mvn, "-q", "-B", "package"], cwd=JAVA_DIR, capture_output=True, text=True, timeout=900
    )
    if res.returncode != 0:
        pytest.fail("building the parquet-java reader failed:\n" + res.stdout[-4000:] + res.stderr[-4000:])
    jar = JAVA_DIR / "target" / "parquet-interop-reader-0.1.0.jar"
    cp = (JAVA_DIR / "target" / "classpath.txt").read_text().strip()
    return [java, "-cp", f"{jar}{os.pathsep}{cp}", "org.thermocline.interop.Dump"]
