"""The recovery procedures of docs/operations.md: each is a shell block marked
`<!-- procedure: NAME -->`, which the tests extract and run exactly as written (tests/integration/
test_operations.py, and the broker-loss one in tests/faults/test_brokers.py)."""

import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(ROOT, "docs", "operations.md")


def procedure(name):
    """The shell text of procedure NAME."""
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"<!-- procedure: " + re.escape(name) + r" -->\n```sh\n(.*?)```", text, re.S)
    assert m, f"docs/operations.md has no procedure {name!r}"
    return m.group(1)
