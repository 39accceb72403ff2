"""`./dev serve` as an HTTP API or, with --function-url, as a Function URL: the routes its banner lists answer."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

from tools.serve import (
    FUNCTION_URL_DOMAIN,
    FUNCTION_URL_ROUTES,
    HTTP_API_ROUTES,
    banner,
    http_api_event,
    make_server,
)

RERANK_BODY = {"query": "fast llm inference", "passages": ["vLLM serves LLMs fast", "sourdough bread"]}
# A body each route accepts (GET routes read none).
BODIES: dict[str, Any] = {
    "/": RERANK_BODY,
    "/rerank": RERANK_BODY,
    "/v1/rerank": {"query": "fast llm inference", "documents": ["vLLM serves LLMs fast"]},
    "/v2/rerank": {"model": "m", "query": "fast llm inference", "documents": ["vLLM serves LLMs fast"]},
}


@contextmanager
def serving(app: ModuleType, *, function_url: bool) -> Iterator[int]:
    server = make_server(app.lambda_handler, function_url=function_url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def listed(routes: tuple[str, ...]) -> list[tuple[str, str]]:
    """("POST", "/rerank") pairs from the banner's route lines."""
    return [(route.split()[0], route.split()[1]) for route in routes]


def test_the_function_url_mode_answers_a_post_to_the_root(app: ModuleType) -> None:
    with serving(app, function_url=True) as port:
        status, body = call(port, "POST", "/", RERANK_BODY)
    assert status == 200
    assert {result["index"] for result in body["results"]} == {0, 1}


def test_an_http_api_has_no_root_route(app: ModuleType) -> None:
    with serving(app, function_url=False) as port:
        status, body = call(port, "POST", "/", RERANK_BODY)
    assert status == 404
    assert body["error"]["type"] == "RouteNotFound"


@pytest.mark.parametrize("function_url", [False, True], ids=["http-api", "function-url"])
def test_every_route_the_banner_lists_answers(app: ModuleType, function_url: bool) -> None:
    routes = listed(FUNCTION_URL_ROUTES if function_url else HTTP_API_ROUTES)
    with serving(app, function_url=function_url) as port:
        for method, path in routes:
            status, _ = call(port, method, path, BODIES.get(path))
            assert status == 200, f"{method} {path}"


def test_the_banner_names_the_mode_and_its_routes(app: ModuleType) -> None:
    server = make_server(app.lambda_handler, function_url=True)
    try:
        text = banner(server, 0.5, function_url=True)
    finally:
        server.server_close()
    assert f"listening on http://127.0.0.1:{server.server_address[1]} as a Function URL" in text
    assert "POST / (native)" in text
    assert all(route in text for route in HTTP_API_ROUTES)


def test_function_url_events_carry_a_lambda_url_domain() -> None:
    event = http_api_event(
        method="POST", target="/", headers=[("Host", "127.0.0.1:8080")], body=b"", source_ip="127.0.0.1"
    )
    assert event["requestContext"]["domainName"] == "127.0.0.1:8080"
    event = http_api_event(
        method="POST",
        target="/",
        headers=[("Host", "127.0.0.1:8080")],
        body=b"",
        source_ip="127.0.0.1",
        function_url=True,
    )
    assert event["requestContext"]["domainName"] == FUNCTION_URL_DOMAIN
    assert event["headers"]["host"] == FUNCTION_URL_DOMAIN
    assert ".lambda-url." in FUNCTION_URL_DOMAIN
