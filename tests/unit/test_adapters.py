"""Caller detection, HTTP event reading (stages, resources, headers, bodies), routing and error shaping."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from reranker import adapters
from reranker.adapters import HttpRequest
from reranker.calls import Call
from reranker.cohere import COHERE_V2
from reranker.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelChecksumMismatch,
    ModelUnavailable,
    PayloadTooLarge,
    RouteNotFound,
    UnsupportedMediaType,
    public_error,
)
from reranker.json_text import json_size
from reranker.native import NATIVE
from reranker.routes import Route, Router
from reranker.tei import TEI
from tests.events import caller_of, event_files, load_event


@pytest.mark.parametrize("name", event_files())
def test_every_sample_is_detected_as_its_caller(name: str) -> None:
    assert adapters.detect_shape(load_event(name)) == caller_of(name)


@pytest.mark.parametrize(
    "event", [None, [], "text", 3, {"query": "q"}, {"requestContext": "x"}, {"requests": []}]
)
def test_anything_else_is_a_direct_invoke(event: object) -> None:
    assert adapters.detect_shape(event) == "direct"


def test_http_api_payload_1_0_reads_like_rest() -> None:
    event = load_event("rest-api-rerank.json")
    event["version"] = "1.0"
    assert adapters.detect_shape(event) == "rest_api"


def read(name: str, **changes: Any) -> HttpRequest:
    event = load_event(name)
    event.update(changes)
    return adapters.read_http_event(event, adapters.detect_shape(event))


def test_named_stage_is_stripped_from_raw_path() -> None:
    request = read("http-api-rerank-named-stage.json")
    assert load_event("http-api-rerank-named-stage.json")["rawPath"] == "/prod/rerank"
    assert (request.method, request.path) == ("POST", "/rerank")


def test_route_key_template_wins_over_raw_path() -> None:
    event = load_event("http-api-rerank.json")
    event["routeKey"] = "ANY /{proxy+}"
    event["pathParameters"] = {"proxy": "rerank"}
    event["rawPath"] = "/custom-domain-base/rerank"
    assert adapters.read_http_event(event, "http_api").path == "/rerank"


def test_path_that_merely_starts_like_the_stage_is_kept() -> None:
    event = load_event("http-api-rerank-named-stage.json")
    event["rawPath"] = "/production/rerank"
    assert adapters.read_http_event(event, "http_api").path == "/production/rerank"


def test_rest_uses_the_resource_not_the_stage_or_base_path() -> None:
    assert read("rest-api-rerank.json", path="/base-path/rerank").path == "/rerank"
    assert read("rest-api-rerank-proxy.json").path == "/rerank"
    assert read("rest-api-rerank-proxy.json", pathParameters={"proxy": "health"}).path == "/health"
    # no usable resource: fall back to path
    assert read("rest-api-rerank.json", resource=None, path="/health/").path == "/health"


def test_headers_are_lower_cased_and_multi_value_joined() -> None:
    request = read("rest-api-rerank.json", headers=None, multiValueHeaders={"X-Thing": ["a", "b"]})
    assert request.headers == {"x-thing": "a,b"}
    assert read("rest-api-rerank.json").headers["content-type"] == "application/json"


def test_correlation_id_comes_from_the_header_else_the_request_id() -> None:
    assert read("http-api-rerank-plain-body.json").correlation_id == "req-7f3a9c"
    request = read("http-api-rerank.json")
    assert request.correlation_id == request.request_id == "Cf3kTgM0oAMEVNw="
    bad = load_event("http-api-rerank.json")
    bad["headers"]["x-correlation-id"] = "no spaces or\nnewlines allowed"
    assert adapters.read_http_event(bad, "http_api").correlation_id == "Cf3kTgM0oAMEVNw="


def http_request(
    body: str | None, content_type: str | None = "application/json", is_base64: bool = False
) -> HttpRequest:
    headers = {} if content_type is None else {"content-type": content_type}
    return HttpRequest("http_api", "POST", "/rerank", headers, body, is_base64, "id", "id")


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"]
)
def test_json_media_types_are_accepted(content_type: str | None) -> None:
    assert adapters.read_json_body(http_request('{"a": 1}', content_type)) == {"a": 1}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
def test_other_media_types_are_415(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        adapters.read_json_body(http_request("{}", content_type))


def test_base64_bodies_are_decoded() -> None:
    body = base64.b64encode(json.dumps({"query": "é"}).encode()).decode()
    assert adapters.read_json_body(http_request(body, is_base64=True)) == {"query": "é"}
    with pytest.raises(InvalidRequest, match="base64"):
        adapters.read_json_body(http_request("***", is_base64=True))
    with pytest.raises(InvalidRequest, match="empty"):
        adapters.read_json_body(http_request(None))


# --- routing -------------------------------------------------------------------------------------------


def answer(dialect: object, payload: object, call: Call) -> dict[str, Any]:
    return {"ok": True}


ROUTER = Router(
    [
        Route("POST", "/rerank", answer, NATIVE, alternatives=(TEI,)),
        Route("GET", "/health", answer, reads_body=False),
        Route("POST", "/v2/rerank", answer, COHERE_V2),
    ]
)


def test_router_finds_routes_and_says_404_or_405() -> None:
    assert ROUTER.resolve("POST", "/rerank").operation is answer
    with pytest.raises(RouteNotFound, match="no route for /nope; routes: POST /rerank, GET /health"):
        ROUTER.resolve("POST", "/nope")
    with pytest.raises(MethodNotAllowed) as raised:
        ROUTER.resolve("DELETE", "/health")
    assert raised.value.allowed == ("GET",)


def test_errors_are_worded_in_the_routes_dialect() -> None:
    error = InvalidRequest("query is required")
    assert ROUTER.dialect_of("/v2/rerank").error_body(error) == (400, {"message": "query is required"})
    assert ROUTER.dialect_of("/rerank").error_body(error) == (
        400,
        {"error": {"type": "InvalidRequest", "message": "query is required"}},
    )
    assert ROUTER.dialect_of("/unknown") is NATIVE


def test_the_body_picks_tei_on_the_native_route() -> None:
    route = ROUTER.resolve("POST", "/rerank")
    assert route.dialect_for({"query": "q", "texts": ["a"]}) is TEI
    assert route.dialect_for({"query": "q", "texts": ["a"], "passages": ["a"]}) is NATIVE
    assert ROUTER.resolve("POST", "/v2/rerank").dialect_for({"texts": ["a"]}) is COHERE_V2


def test_405_response_carries_allow() -> None:
    response = adapters.write_error(MethodNotAllowed("no", ("GET", "POST")), NATIVE, "cid")
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET, POST"
    assert response["headers"]["X-Correlation-Id"] == "cid"
    assert json.loads(response["body"]) == {"error": {"type": "MethodNotAllowed", "message": "no"}}


def test_public_error_keeps_documented_types_and_hides_the_rest() -> None:
    documented = PayloadTooLarge("too big")
    assert public_error(documented) is documented
    narrowed = public_error(ModelChecksumMismatch("sha256 of s3://b/k is wrong"))
    assert type(narrowed) is ModelUnavailable
    hidden = public_error(KeyError("/var/task/secret"))
    assert type(hidden) is InternalError
    assert "secret" not in hidden.public_message


def test_responses_above_the_lambda_limit_are_refused() -> None:
    adapters.ensure_response_fits(6 * 1024 * 1024, NATIVE.size_advice)  # inclusive: 6,291,456 bytes
    with pytest.raises(PayloadTooLarge, match=r'6 MB.*"return_text": false'):
        adapters.ensure_response_fits(6 * 1024 * 1024 + 1, NATIVE.size_advice)
    with pytest.raises(PayloadTooLarge, match='"return_documents": false'):
        adapters.ensure_response_fits(6 * 1024 * 1024 + 1, COHERE_V2.size_advice)
    assert json_size({"a": "é"}) == len('{"a":"é"}'.encode())
    assert json_size({"a": "\ud800"}) == len('{"a":"\\ud800"}')


def test_http_answers_escape_lone_surrogates_and_stay_strict_json() -> None:
    response = adapters.http_response(200, {"id": "\ud83d", "meta": {"\udfff": "é😀"}})
    assert response["body"] == '{"id":"\\ud83d","meta":{"\\udfff":"é😀"}}'
    response["body"].encode("utf-8")  # what the runtime does with it
    with pytest.raises(ValueError, match="Out of range float"):
        adapters.http_response(200, {"score": float("nan")})  # a fault of ours: never a non-JSON answer
