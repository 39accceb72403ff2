"""`sam local start-api` with real HTTP requests on 127.0.0.1: every route of the template's HTTP API answers,
every HTTP API event file that HTTP can carry gets its documented answer, and requests off the routes never
reach the function (SAM's gateway answers them itself, as API Gateway does)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from cfnlint.decode import cfn_yaml

from tests.events import EXPECTED, Outcome, load_event, run
from tests.sam_local.sam_cli import (
    CONFIG,
    REPO,
    HttpRequest,
    assert_expected,
    free_loopback_port,
    http_request_of,
    ranking,
    record,
    sam_command,
    send,
)

START_TIMEOUT_SECONDS = 120  # SAM reads the template, builds the image, starts the warm container
STOP_TIMEOUT_SECONDS = 30


def template_routes() -> set[tuple[str, str]]:
    template = cfn_yaml.loads((REPO / "template.yaml").read_text(encoding="utf-8"))
    return {
        tuple(resource["Properties"]["RouteKey"].split(" ", 1))
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::ApiGatewayV2::Route"
    }


ROUTES = template_routes()
REPLAYED = {
    name: request
    for name in sorted(EXPECTED)
    if (request := http_request_of(name)) is not None
    and (request.method, request.path.split("?")[0]) in ROUTES
}
OFF_ROUTE = {
    name: request
    for name in sorted(EXPECTED)
    if (request := http_request_of(name)) is not None and name not in REPLAYED
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_loopback_port()
    log_path: Path = tmp_path_factory.mktemp("start-api") / "sam.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*sam_command(), "local", "start-api", *CONFIG, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sam local start-api did not start:\n{log_path.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)  # SAM stops its warm container on Ctrl+C
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_route_is_exercised() -> None:
    assert {(request.method, request.path.split("?")[0]) for request in REPLAYED.values()} | {
        ("GET", "/openapi.json")
    } == ROUTES


@pytest.mark.parametrize("name", sorted(REPLAYED))
def test_http_request_gets_the_documented_answer(api: str, app: ModuleType, name: str) -> None:
    # Given the request an HTTP API event file records, sent over HTTP to sam local start-api
    answer = send(api, REPLAYED[name])

    # Then SAM's gateway hands it to the function and back: the documented answer, the in-process ranking
    assert answer.headers.get("Content-Type", "").startswith("application/json"), answer
    outcome = Outcome(status=answer.status, body=json.loads(answer.body), headers=answer.headers)
    record(f"start-api {REPLAYED[name].method} {REPLAYED[name].path} ({name})", outcome)
    assert_expected(name, outcome)
    if outcome.status == 200:
        assert ranking(outcome.body) == ranking(run(app, load_event(name)).body)


def test_openapi_document_lists_every_route(api: str) -> None:
    answer = send(api, HttpRequest("GET", "/openapi.json", {"accept": "application/json"}, None))
    assert answer.status == 200, answer
    document = json.loads(answer.body)
    record("start-api GET /openapi.json", Outcome(status=answer.status, body=document))
    assert document["openapi"].startswith("3.")
    assert {(method.upper(), path) for path, item in document["paths"].items() for method in item} >= ROUTES


@pytest.mark.parametrize("name", sorted(OFF_ROUTE))
def test_request_off_the_routes_never_reaches_the_function(api: str, name: str) -> None:
    # Given a request for a method or path the HTTP API has no route for (a named stage's path included:
    # the deployed API has only $default)
    answer = send(api, OFF_ROUTE[name])

    # Then SAM's gateway refuses it without invoking the function: its own body, not the function's errors
    # (SAM answers 403 "Missing Authentication Token" like a REST API; a deployed HTTP API answers 404 "Not Found")
    body = json.loads(answer.body)
    request = OFF_ROUTE[name]
    record(
        f"start-api {request.method} {request.path} ({name}, off the routes)", Outcome(answer.status, body)
    )
    assert answer.status in {403, 404}, answer
    assert set(body) == {"message"}, body
