"""The OpenAPI document tells the truth: every app route is documented and vice versa, and a
property-based run of the whole API against it finds no 500s and no answer off its schema."""

from __future__ import annotations

import os
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation

from gethookd.api import openapi
from gethookd.api.app import ROUTES
from helpers import Api

METHODS = ("get", "post", "put", "patch", "delete")


def _app_operations() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, resource in ROUTES.items()
        for method in METHODS
        if hasattr(resource, f"on_{method}") and not path.startswith("/console")
    }


def _documented_operations() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in openapi.PATHS.items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists():
    app, doc = _app_operations(), _documented_operations()
    assert app - doc == set(), "routes missing from the OpenAPI document"
    assert doc - app == set(), "documented routes the app does not serve"


def test_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    doc = openapi.document("http://localhost:8080")
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            auth = operation.get("security") != []
            if auth:
                assert "401" in operation["responses"], (path, method)


schema = schemathesis.openapi.from_dict(openapi.document())


@pytest.fixture(scope="module")
def fuzz_key(api_daemon) -> str:
    return Api(api_daemon.url).register(f"fuzz-{uuid.uuid4().hex[:8]}@example.com").key


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "15")),
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case, api_daemon, fuzz_key):
    headers = {"Authorization": f"Bearer {fuzz_key}"} if case.operation.security else {}
    negative = {loc for loc in case.meta.components if case.meta.is_negative_at(loc)}
    if ParameterLocation.HEADER in negative:
        # Header mutations are not what the app sees: this test sets Authorization itself,
        # extra headers are no malformed request, and gunicorn itself answers garbage such
        # as `Content-Length: preset` with its own 400 page. The app must still never fail.
        case.call_and_validate(
            base_url=api_daemon.url, headers=headers, timeout=10, checks=[not_a_server_error]
        )
        return
    case.call_and_validate(base_url=api_daemon.url, headers=headers, timeout=10)
