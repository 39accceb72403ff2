"""Every events/ file and every OpenAPI request example answers exactly as recorded, byte for byte.

The recording (tests/recorded_answers.json) was taken before the handler was restructured: a refactoring that
changes any answer fails here. A change made on purpose is recorded again, in the commit that makes it:

    RECORD_ANSWERS=1 .venv/bin/python -m pytest tests/unit/test_recorded_answers.py

Only timing fields are masked (the model's load time in /health); everything else is compared as the runtime
would send it: an HTTP answer's status, headers and body string, a direct answer's JSON (or the bytes the handler
encoded itself), a raised error's class, status and public message.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reranker.errors import RerankerError
from tests.events import event_files, load_event
from tools.invoke import LocalContext

RECORDING = Path(__file__).resolve().parent.parent / "recorded_answers.json"
OPENAPI = Path(__file__).resolve().parents[2] / "handler" / "reranker" / "openapi.json"
REQUEST_ID = "recorded-request-0001"
# The key may sit inside an HTTP body string, where its quotes are escaped.
_TIMING = re.compile(r'(\\?"load_seconds\\?": ?)[0-9.eE+-]+')


def _mask(text: str) -> str:
    return _TIMING.sub(r"\1null", text)


def answer_of(app: ModuleType, event: Any) -> str:
    """The answer as the runtime would send it, in one text: HTTP and direct answers, raised errors."""
    try:
        response = app.lambda_handler(copy.deepcopy(event), LocalContext(request_id=REQUEST_ID))
    except RerankerError as exc:
        return f"raised {type(exc).__name__} status={exc.http_status} message={exc.public_message!r}"
    if isinstance(response, bytes):
        return "bytes " + _mask(response.decode("utf-8"))
    return _mask(json.dumps(response, ensure_ascii=False))


def openapi_examples() -> dict[str, tuple[str, str, Any]]:
    """Each request example in the OpenAPI document: name -> (method, path, body)."""
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    found: dict[str, tuple[str, str, Any]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" in content:
                found[f"openapi {method.upper()} {path}"] = (method.upper(), path, content["example"])
            for name, example in content.get("examples", {}).items():
                found[f"openapi {method.upper()} {path} {name}"] = (method.upper(), path, example["value"])
    return found


def http_event(method: str, path: str, body: Any) -> dict[str, Any]:
    """An HTTP API event for one example (a Function URL's for the root), fixed ids so the answer reproduces."""
    event: dict[str, Any] = load_event("function-url-rerank.json" if path == "/" else "http-api-rerank.json")
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["body"] = json.dumps(body)
    event["isBase64Encoded"] = False
    return event


def cases() -> dict[str, Any]:
    found: dict[str, Any] = {f"event {name}": load_event(name) for name in event_files()}
    for name, (method, path, body) in openapi_examples().items():
        found[name] = http_event(method, path, body)
    return found


def test_every_answer_is_as_recorded(app: ModuleType) -> None:
    answers = {name: answer_of(app, event) for name, event in sorted(cases().items())}
    if os.environ.get("RECORD_ANSWERS") == "1":
        RECORDING.write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        pytest.skip("answers recorded")
    recorded = json.loads(RECORDING.read_text(encoding="utf-8"))
    assert sorted(answers) == sorted(recorded), "the events/ files or OpenAPI examples changed: record again"
    changed = [name for name in answers if answers[name] != recorded[name]]
    assert not changed, f"answers differ from the recording: {changed}\n" + "\n".join(
        f"{name}:\n  recorded {recorded[name][:400]}\n  now      {answers[name][:400]}"
        for name in changed[:3]
    )


def test_the_recording_covers_every_route_and_answer_kind() -> None:
    recorded = json.loads(RECORDING.read_text(encoding="utf-8"))
    assert len(recorded) >= 60
    assert any(answer.startswith("raised ") for answer in recorded.values())
    assert any('"statusCode": 200' in answer for answer in recorded.values())
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        assert any(name.startswith(f"openapi POST {path}") for name in recorded), path
