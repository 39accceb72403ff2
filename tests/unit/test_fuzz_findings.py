"""Regressions for what schemathesis found when it fuzzed the OpenAPI document (tests/integration/test_openapi.py)."""

from __future__ import annotations

import http.client
import json
import threading
from types import ModuleType

import pytest

from reranker.schemas import Limits, parse_rerank_request
from tools.serve import make_server


@pytest.mark.parametrize("value", [5.0, 1.0, 1e3])
def test_integral_floats_are_integers_for_top_k(value: float) -> None:
    # JSON Schema's "integer" (and JSON itself) does not tell 5.0 from 5, and Python clients send 5.0.
    request = parse_rerank_request({"query": "q", "passages": [], "top_k": value}, Limits())
    assert request.top_k == int(value)
    assert type(request.top_k) is int


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PROPFIND"])
def test_the_local_server_hands_every_method_to_the_function(app: ModuleType, method: str) -> None:
    # http.server answered an HTML 501 for methods without a do_ handler (TRACE, QUERY); API Gateway's $default
    # route passes them on, and the function's router answers a JSON 405.
    server = make_server(app.lambda_handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        connection.request(method, "/rerank")
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    assert response.status == 405
    assert body["error"]["type"] == "MethodNotAllowed"
    assert response.getheader("Allow") == "POST"
