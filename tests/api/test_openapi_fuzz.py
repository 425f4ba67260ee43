"""Schema fuzzing (schemathesis) of every operation in /api/openapi.json, in-process against the WSGI
app with a bearer token: no 500s, and every response matches its documented status, media type, headers
and schema. Example counts stay small so the suite stays fast."""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine import accounts
from engine.runtime import Runtime
from tests.api.conftest import Tokens, World

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(app: Flask, world: World) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_documented_contract(
    case: schemathesis.Case, tokens: Tokens, api_rt: Runtime
) -> None:
    if case.path == "/api/auth/logout" or case.path.startswith("/api/auth/tokens/"):
        # these revoke the token they are called with: give each call a throwaway one
        headers = {"Authorization": f"Bearer {accounts.issue_token('gw_g1', rt=api_rt).token}"}
    else:
        headers = tokens["owner_1" if case.path.startswith("/api/specs") else "supervisor_d"]
    case.call_and_validate(headers=headers, checks=CHECKS)
