"""Property-based tests of the REST API against its own OpenAPI document (schemathesis).

For every operation of /v1/openapi.json, schemathesis generates requests from the documented
parameters (values inside and at the edges of their schemas), sends them with each role's token
and with none, and checks every response: no 5xx, the status is one the document lists, the
content type is documented, the body matches its schema (Page, Row, Problem). Examples per
operation and caller are few (TC_SCHEMATHESIS_EXAMPLES, default 15) to keep `make test` fast;
raise it for a longer hunt.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from rest_api import ROLES, Api, token

EXAMPLES = int(os.environ.get("TC_SCHEMATHESIS_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def api():
    a = Api(extra=["api.rate_per_s=100000", "api.rate_burst=100000"])
    a.t.cmd("topics", "create")  # redrive sends to it
    yield a
    assert a.close() == 0


@pytest.mark.parametrize("caller", [None, *ROLES])
def test_every_operation_conforms(api, caller):
    schema = schemathesis.openapi.from_url(f"{api.base}/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token(caller)}"} if caller else {}
    ran = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(base_url=api.base, headers=headers, checks=CHECKS,
                                   timeout=60)

        check()
        ran.append(op.label)
    # schemathesis leaves out the operation that serves the document it was loaded from.
    assert len(ran) == 10 and "GET /v1/openapi.json" not in ran, ran
