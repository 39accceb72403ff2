"""The events/*.json samples (the same files `sam local invoke -e` takes), what each must produce, and a runner."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from reranker.errors import RerankerError
from tools.invoke import LocalContext

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


@dataclass(frozen=True)
class Expectation:
    status: int
    error_type: str | None = None
    results: int | None = None  # how many results a 200 carries
    message_contains: str | None = None


EXPECTED: dict[str, Expectation] = {
    # API Gateway HTTP API, payload 2.0
    "http-api-rerank.json": Expectation(200, results=3),
    "http-api-rerank-plain-body.json": Expectation(200, results=3),
    "http-api-rerank-named-stage.json": Expectation(200, results=2),
    "http-api-rerank-route-key.json": Expectation(200, results=2),
    "http-api-rerank-charset.json": Expectation(200, results=2),
    "http-api-empty-passages.json": Expectation(200, results=0),
    "http-api-health.json": Expectation(200),
    "http-api-bad-json.json": Expectation(400, "InvalidRequest", message_contains="not valid JSON"),
    "http-api-bad-base64.json": Expectation(400, "InvalidRequest", message_contains="base64"),
    "http-api-empty-body.json": Expectation(400, "InvalidRequest", message_contains="empty"),
    "http-api-missing-query.json": Expectation(400, "InvalidRequest", message_contains="query is required"),
    "http-api-empty-query.json": Expectation(
        400, "InvalidRequest", message_contains="query must not be empty"
    ),
    "http-api-bad-top-k.json": Expectation(400, "InvalidRequest", message_contains="top_k"),
    "http-api-bad-passage.json": Expectation(
        400, "InvalidRequest", message_contains="passages[1].text must be a string"
    ),
    "http-api-unknown-field.json": Expectation(400, "InvalidRequest", message_contains="'documents'"),
    "http-api-too-many-passages.json": Expectation(413, "PayloadTooLarge", message_contains="passages"),
    "http-api-query-too-long.json": Expectation(413, "PayloadTooLarge", message_contains="query"),
    "http-api-wrong-content-type.json": Expectation(415, "UnsupportedMediaType"),
    "http-api-unknown-route.json": Expectation(404, "RouteNotFound", message_contains="/v3/rerank"),
    "http-api-wrong-method.json": Expectation(405, "MethodNotAllowed", message_contains="POST"),
    "http-api-bad-min-score.json": Expectation(400, "InvalidRequest", message_contains="min_score"),
    # TEI's rerank API on POST /rerank: a bare list; errors {"error": message, "error_type": kind}
    "http-api-tei-rerank.json": Expectation(200),
    "http-api-tei-bad-texts.json": Expectation(
        422, "validation", message_contains="texts[1] must be a string"
    ),
    # Lambda Function URL (payload 2.0 on a lambda-url domain)
    "function-url-rerank.json": Expectation(200, results=3),
    "function-url-health.json": Expectation(200),
    "function-url-bad-json.json": Expectation(400, "InvalidRequest", message_contains="not valid JSON"),
    "function-url-root-rerank.json": Expectation(200, results=2),  # Function URLs are called at their root
    "function-url-unknown-route.json": Expectation(404, "RouteNotFound", message_contains="/rank"),
    # API Gateway REST API, payload 1.0
    "rest-api-rerank.json": Expectation(200, results=3),
    "rest-api-rerank-proxy.json": Expectation(200, results=3),
    "rest-api-health.json": Expectation(200),
    "rest-api-wrong-method.json": Expectation(405, "MethodNotAllowed", message_contains="GET"),
    "rest-api-bad-top-k.json": Expectation(400, "InvalidRequest", message_contains="top_k"),
    "rest-api-wrong-content-type.json": Expectation(415, "UnsupportedMediaType"),
    "rest-api-unknown-route.json": Expectation(404, "RouteNotFound", message_contains="/rank"),
    # Direct invoke (Step Functions lambda:invoke): errors are raised, status is the error's http_status
    "direct-rerank.json": Expectation(200, results=3),
    "direct-rerank-no-text.json": Expectation(200, results=5),
    "direct-rerank-min-score.json": Expectation(200),
    "direct-empty-passages.json": Expectation(200, results=0),
    "direct-missing-query.json": Expectation(400, "InvalidRequest", message_contains="query is required"),
    "direct-bad-top-k.json": Expectation(400, "InvalidRequest", message_contains="top_k must be a positive"),
    "direct-bad-passage.json": Expectation(400, "InvalidRequest", message_contains="passages[0].id"),
    "direct-unknown-field.json": Expectation(400, "InvalidRequest", message_contains="'top_n'"),
    "direct-not-object.json": Expectation(400, "InvalidRequest", message_contains="JSON object"),
    "direct-too-many-passages.json": Expectation(413, "PayloadTooLarge", message_contains="1001"),
    # Cohere's wire format (HTTP API): errors are {"message"} with no type
    "cohere-v2-rerank.json": Expectation(200),
    "cohere-v1-rerank.json": Expectation(200),
    "cohere-v2-empty-query.json": Expectation(400, message_contains="query must not be empty"),
    "cohere-v1-bad-documents.json": Expectation(400, message_contains="documents[0] has no string 'text'"),
    # Batches (direct invoke): item errors are answered in place; envelope errors are raised
    "batch-requests.json": Expectation(200),
    "batch-not-a-list.json": Expectation(400, "InvalidRequest", message_contains="requests must be a list"),
    "distributed-map-items.json": Expectation(200),
    "distributed-map-bad-batch-input.json": Expectation(400, "InvalidRequest", message_contains="BatchInput"),
}


def event_files() -> list[str]:
    return sorted(path.name for path in EVENTS_DIR.glob("*.json"))


def load_event(name: str) -> Any:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def caller_of(name: str) -> str:
    """The caller shape an event file is written for, from its name prefix."""
    for prefix, shape in (
        ("http-api-", "http_api"),
        ("function-url-", "function_url"),
        ("rest-api-", "rest_api"),
        ("direct-", "direct"),
        ("cohere-", "http_api"),
        ("batch-", "direct"),
        ("distributed-map-", "direct"),
    ):
        if name.startswith(prefix):
            return shape
    raise AssertionError(f"event file {name} has no known caller prefix")


@dataclass
class Outcome:
    """An answer in one form for every caller: status, JSON body, headers (or the raised error)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raised: RerankerError | None = None

    @property
    def error_type(self) -> str | None:
        if self.raised is not None:
            return self.raised.error_type
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["type"])
        if isinstance(self.body, dict) and "error_type" in self.body:
            return str(self.body["error_type"])  # TEI's error shape
        return None  # also Cohere's error shape, which has no type

    @property
    def message(self) -> str:
        if self.raised is not None:
            return self.raised.public_message
        if "error" not in self.body:
            return str(self.body["message"])  # Cohere's error shape
        if isinstance(self.body["error"], str):
            return self.body["error"]  # TEI's error shape
        return str(self.body["error"]["message"])


def run(app: ModuleType, event: Any, context: Any | None = None) -> Outcome:
    """Invoke lambda_handler like Lambda would and normalise the answer."""
    context = context or LocalContext()
    try:
        response = app.lambda_handler(event, context)
    except RerankerError as exc:
        return Outcome(status=exc.http_status, body=None, raised=exc)
    if isinstance(response, bytes):  # a direct answer the handler serialized itself (adapters.direct_payload)
        return Outcome(status=200, body=json.loads(response))
    if isinstance(response, dict) and "statusCode" in response:
        return Outcome(
            status=response["statusCode"], body=json.loads(response["body"]), headers=response["headers"]
        )
    json.dumps(response, allow_nan=False)  # what the runtime will do with it
    return Outcome(status=200, body=response)
