"""Schemathesis hooks for the GraphQL run of test_graphql.py (loaded through SCHEMATHESIS_HOOKS):
strategies for PostGraphile's custom scalars, which schemathesis cannot guess. Datetimes include
out-of-range and odd offsets; cursors include garbage, which the server must refuse, not fail on."""

from hypothesis import strategies as st

import schemathesis
from schemathesis.graphql import nodes

_DATETIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["2026-12-05T00:00:00Z", "1970-01-01T00:00:00+00:00", "9999-12-31T23:59:59Z",
                     "0001-01-01T00:00:00Z", "not a date", ""]),
)
schemathesis.graphql.scalar("Datetime", _DATETIMES.map(nodes.String))
schemathesis.graphql.scalar("Cursor", st.one_of(
    st.sampled_from(["WyJuYXR1cmFsIiwxXQ==", "WyJwcmltYXJ5X2tleV9hc2MiLFsiZDEiXV0=", "e30=", "!!"]),
    st.text(max_size=40)).map(nodes.String))
schemathesis.graphql.scalar("BigInt", st.integers(min_value=-(2 ** 70), max_value=2 ** 70).map(str).map(nodes.String))
schemathesis.graphql.scalar("BigFloat", st.floats(allow_nan=False).map(str).map(nodes.String))
schemathesis.graphql.scalar("JSON", st.sampled_from(['{"site": "berlin"}', "{}", "[]", "1", "not json"]).map(nodes.String))
