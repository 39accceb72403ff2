"""The SAM CLI run as docs/sam-local.md tells users to run it, and its answers read back into tests.events terms."""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reranker import errors
from tests.events import EXPECTED, Outcome, caller_of, load_event

REPO = Path(__file__).resolve().parents[2]
# samconfig.toml's environment for x86_64 machines; --skip-pull-image because the step's base image is built
# locally (tools/sam_local/base_image.sh) and nothing can be pulled.
CONFIG = ("--config-env", "local-x86_64", "--skip-pull-image")
INVOKE_TIMEOUT_SECONDS = 180  # one `sam local invoke`: image build, container start, model load, answer
# A client that never goes through a proxy: every request of these tests stays on 127.0.0.1.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Headers the HTTP client sets itself from the request it sends.
TRANSPORT_HEADERS = {"host", "content-length"}


# What each event or request got, for the step's summary (conftest.py prints it): "403" or "400 InvalidRequest".
ANSWERS: dict[str, str] = {}


def record(what: str, outcome: Outcome) -> None:
    ANSWERS[what] = f"{outcome.status} {outcome.error_type or ''}".strip()


def sam_command() -> list[str]:
    """`sam`, or the host-network shim in front of it (tools/sam_local/run.sh decides)."""
    return shlex.split(os.environ["SAM_LOCAL_COMMAND"])


def invoke(
    event_name: str, *extra: str, sam: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`sam local invoke --config-env local-x86_64 -e events/NAME`: the answer on stdout, logs on stderr."""
    return subprocess.run(
        [*(sam or sam_command()), "local", "invoke", *CONFIG, *extra, "-e", f"events/{event_name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT_SECONDS,
        env={**os.environ, **(env or {})},
        check=False,
    )


def outcome_of_invoke(completed: subprocess.CompletedProcess[str]) -> Outcome:
    """What `sam local invoke` printed, as an Outcome. SAM exits 0 even when the function failed or never
    answered, so the answer itself is read: a Lambda error of ours, an API Gateway-style response, or a
    direct answer."""
    if not completed.stdout.strip():
        raise AssertionError(f"sam local invoke printed no answer; its log ends:\n{completed.stderr[-3000:]}")
    answer = json.loads(completed.stdout)
    if isinstance(answer, dict) and "errorType" in answer:
        error_class = getattr(errors, str(answer["errorType"]), None)
        if not (isinstance(error_class, type) and issubclass(error_class, errors.RerankerError)):
            raise AssertionError(f"the function failed with an error of no known type: {answer}")
        raised = error_class(str(answer["errorMessage"]))
        return Outcome(status=raised.http_status, body=None, raised=raised)
    if isinstance(answer, dict) and "statusCode" in answer:
        assert answer.get("isBase64Encoded") is False, answer
        return Outcome(
            status=answer["statusCode"], body=json.loads(answer["body"]), headers=answer["headers"]
        )
    return Outcome(status=200, body=answer)


def assert_expected(name: str, outcome: Outcome) -> None:
    """The answer tests/events.py documents for this event file."""
    expected = EXPECTED[name]
    assert outcome.status == expected.status, (name, outcome)
    assert outcome.error_type == expected.error_type, (name, outcome)
    if expected.message_contains is not None:
        assert expected.message_contains in outcome.message, (name, outcome)
    if expected.results is not None:
        assert len(outcome.body["results"]) == expected.results, (name, outcome)


def ranking(body: Any) -> list[tuple[Any, ...]]:
    """What must not depend on where the function runs: every ranked item of an answer (native, Cohere, TEI,
    batch), in order, as (index, id, score to 6 places)."""
    if isinstance(body, list):
        return [item for element in body for item in ranking(element)]
    if not isinstance(body, dict):
        return []
    score = body.get("score", body.get("relevance_score"))
    if "index" in body and isinstance(score, float):
        return [(body["index"], body.get("id"), round(score, 6))]
    return [item for value in body.values() for item in ranking(value)]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


def http_request_of(name: str) -> HttpRequest | None:
    """The HTTP request an HTTP API event file records, or None when HTTP cannot carry it (a body API
    Gateway would never have base64-encoded wrongly)."""
    if caller_of(name) != "http_api":
        return None
    event = load_event(name)
    body = event.get("body")
    if body is None:
        payload = None
    elif event.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        payload = body.encode("utf-8")
    query = event.get("rawQueryString") or ""
    headers = {key: value for key, value in event["headers"].items() if key.lower() not in TRANSPORT_HEADERS}
    path = event["rawPath"] + (f"?{query}" if query else "")
    return HttpRequest(event["requestContext"]["http"]["method"], path, headers, payload)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def send(base_url: str, request: HttpRequest, timeout: float = 60) -> HttpAnswer:
    sent = urllib.request.Request(
        base_url + request.path, data=request.body, headers=request.headers, method=request.method
    )
    try:
        with LOOPBACK.open(sent, timeout=timeout) as response:
            return HttpAnswer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(error.code, dict(error.headers.items()), error.read())
