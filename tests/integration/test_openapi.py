"""The committed OpenAPI document: valid OpenAPI 3.1, the router's exact routes, served, and fuzzed with schemathesis.

schemathesis generates requests from the document (valid ones and, in its negative mode, invalid ones) and sends
them to `./dev serve` (tools.serve on a free loopback port); every answer must be no 5xx, carry a documented
status code and content type, and match the documented schema for that status. Under CI=true hypothesis is
derandomized (tests/conftest.py), so CI explores the same cases every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reranker.service import OPENAPI_DOCUMENT
from tests.conftest import BASE_ENV
from tests.models import fixture_model
from tests.serve_process import serve_process
from tools.invoke import HANDLER_DIR, LocalContext
from tools.serve import http_api_event

pytestmark = pytest.mark.xdist_group("openapi-server")

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Cases per operation; GET operations without parameters have only a handful of distinct cases anyway.
FUZZ_EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "300"))


def load_document() -> dict[str, object]:
    document = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def documented_routes() -> set[tuple[str, str]]:
    paths = load_document()["paths"]
    assert isinstance(paths, dict)
    return {
        (method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS
    }


def test_document_is_valid_openapi_3_1() -> None:
    document = load_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises OpenAPIValidationError with the JSON path of the first problem


def test_document_describes_exactly_the_routers_routes(app: ModuleType) -> None:
    routed = {(route.method, route.path) for route in app.ROUTER.routes}
    documented = documented_routes()
    assert routed - documented == set(), "routes missing from openapi.json"
    assert documented - routed == set(), "openapi.json describes routes the router does not have"


def test_every_response_of_every_operation_has_a_json_schema() -> None:
    paths = load_document()["paths"]
    assert isinstance(paths, dict)
    for path, item in paths.items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            assert "500" in operation["responses"], (method, path)


def test_get_openapi_json_serves_the_committed_document(app: ModuleType) -> None:
    event = http_api_event(method="GET", target="/openapi.json", headers=[], body=b"", source_ip="::1")
    response = app.lambda_handler(event, LocalContext())
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == load_document()


def test_cold_start_does_not_read_the_document(model_dir: Path) -> None:
    # Lambda's init imports reranker.app; the document is read only when GET /openapi.json first asks for it.
    probe = (
        "import reranker.app, reranker.service as service; "
        "assert not service._openapi_cache, 'read at import'; "
        "service.openapi_document(None, None, None); assert service._openapi_cache['openapi'] == '3.1.0'"
    )
    env = {**os.environ, **BASE_ENV, "MODEL_DIR": str(model_dir), "PYTHONPATH": str(HANDLER_DIR)}
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


# --- schemathesis against ./dev serve -----------------------------------------------------------------------

schema = schemathesis.openapi.from_path(OPENAPI_DOCUMENT).exclude(
    # ./dev serve sends API Gateway (HTTP API) events, where / is not a route; the Function URL root is the
    # native rerank operation (fuzzed as POST /rerank) and tests/unit/test_hostile_input.py drives it.
    operation_id="rerankFunctionUrlRoot"
)


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with serve_process(fixture_model("int8")) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI", "").lower() == "true",
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_get_documented_answers(case: schemathesis.Case, served: str) -> None:
    case.call_and_validate(
        base_url=served,
        timeout=30,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
