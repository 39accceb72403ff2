"""The handler under the real Runtime Interface Client (awslambdaric), against a Runtime API served here.

Proves what unit tests cannot: the handler string resolves from handler/ (Lambda's /var/task), the model
loads during init, answers serialize, and a direct-invoke error reaches the runtime with errorType set to
the documented error name (what Step Functions matches in ErrorEquals).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.events import load_event
from tests.loopback import serving

REPO = Path(__file__).resolve().parents[2]
HANDLER = "reranker.app.lambda_handler"
WAIT_SECONDS = 30.0
PREFIX = "/2018-06-01/runtime"


@dataclass
class RuntimeApi:
    """The few Runtime API routes the client uses; invocations are queued by the test."""

    pending: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    answers: dict[str, tuple[str, Any, dict[str, str]]] = field(default_factory=dict)
    init_errors: list[tuple[Any, dict[str, str]]] = field(default_factory=list)
    answered: threading.Condition = field(default_factory=threading.Condition)
    polled: threading.Event = field(default_factory=threading.Event)
    address: str = ""

    def invoke(self, event: Any) -> str:
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, event))
        return request_id

    def wait_answer(self, request_id: str) -> tuple[str, Any, dict[str, str]]:
        deadline = time.monotonic() + WAIT_SECONDS
        with self.answered:
            while request_id not in self.answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.init_errors:
                    raise AssertionError(f"no answer for {request_id}; init errors: {self.init_errors}")
                self.answered.wait(timeout=min(left, 0.5))
            return self.answers[request_id]

    def record(self, request_id: str | None, kind: str, payload: Any, headers: dict[str, str]) -> None:
        with self.answered:
            if request_id is None:
                self.init_errors.append((payload, headers))
            else:
                self.answers[request_id] = (kind, payload, headers)
            self.answered.notify_all()


def make_handler(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # awslambdaric's native client fails on HTTP/1.0 answers

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404)
                return
            api.polled.set()
            try:
                request_id, event = api.pending.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                self._reply(500, b'{"errorMessage": "test over"}')
                return
            deadline_ms = int((time.time() + 30) * 1000)
            self._reply(
                200,
                event.encode() if isinstance(event, str) else json.dumps(event).encode(),  # str: JSON as is
                {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:reranker",
                    "Lambda-Runtime-Trace-Id": "Root=1-5e1b4151-5ac6c58f5b5dbd6a6a7c6d4e;Parent=0;Sampled=0",
                },
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            payload = json.loads(raw.decode("utf-8"), parse_constant=_not_json) if raw else None
            headers = {name.lower(): value for name, value in self.headers.items()}
            parts = self.path.split("/")
            if self.path == f"{PREFIX}/init/error":
                api.record(None, "init-error", payload, headers)
            elif self.path.startswith(f"{PREFIX}/invocation/") and parts[-1] in ("response", "error"):
                api.record(parts[-2], parts[-1], payload, headers)
            else:
                self._reply(404)
                return
            self._reply(202)

    return Handler


def _not_json(name: str) -> object:
    raise AssertionError(f"the runtime sent {name}, which is not JSON")


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    with serving(make_handler(api)) as address:
        api.address = address
        yield api


def start_runtime(api: RuntimeApi, model_dir: Path) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "AWS_", "PYTEST"))
    }
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "PYTHONPATH": str(REPO / "handler"),  # only handler/, like /var/task
            "MODEL_DIR": str(model_dir),
            "AWS_LAMBDA_FUNCTION_NAME": "reranker",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            # As on the managed python3.13 runtime: its encoder then writes non-ASCII text unescaped.
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", HANDLER],
        cwd=REPO / "handler",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def check_documented_answers(api: RuntimeApi, *, init_seconds: float, model_name: str) -> None:
    """Once the runtime has initialised: a rerank, an HTTP call and a bad request, each answered as documented.

    The built packages' runtime tests (tests/artifact, tests/arm64) run it against their own runtime process.
    """
    assert api.polled.wait(timeout=init_seconds), "the runtime never asked for an invocation"
    assert api.init_errors == []
    direct = api.invoke(load_event("direct-rerank.json"))
    http = api.invoke(load_event("http-api-rerank.json"))
    invalid = api.invoke(load_event("direct-missing-query.json"))

    kind, answer, _ = api.wait_answer(direct)
    assert kind == "response"
    assert answer["model"] == model_name and len(answer["results"]) == 3
    kind, answer, _ = api.wait_answer(http)
    assert (kind, answer["statusCode"]) == ("response", 200)
    assert len(json.loads(answer["body"])["results"]) == 3
    kind, answer, _ = api.wait_answer(invalid)
    assert (kind, answer["errorType"]) == ("error", "InvalidRequest")


def stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=10)
    return output


def test_handler_runs_under_the_runtime_interface_client(runtime_api: RuntimeApi, model_dir: Path) -> None:
    process = start_runtime(runtime_api, model_dir)
    try:
        # Init: the client imports reranker.app (model load) before it asks for the first invocation.
        assert runtime_api.polled.wait(timeout=WAIT_SECONDS), "the runtime never asked for an invocation"
        assert runtime_api.init_errors == []

        direct = runtime_api.invoke(load_event("direct-rerank.json"))
        http = runtime_api.invoke(load_event("http-api-rerank.json"))
        invalid = runtime_api.invoke(load_event("direct-missing-query.json"))
        health = runtime_api.invoke(load_event("function-url-health.json"))

        kind, answer, _ = runtime_api.wait_answer(direct)
        assert kind == "response"
        assert answer["model"] == "ms-marco-TinyBERT-L-2-v2" and len(answer["results"]) == 3

        kind, answer, _ = runtime_api.wait_answer(http)
        assert (kind, answer["statusCode"]) == ("response", 200)
        assert len(json.loads(answer["body"])["results"]) == 3

        kind, answer, _ = runtime_api.wait_answer(invalid)
        assert kind == "error"
        assert answer["errorType"] == "InvalidRequest"  # what Step Functions' ErrorEquals matches
        assert answer["errorMessage"] == "query is required"

        kind, answer, _ = runtime_api.wait_answer(health)
        assert json.loads(answer["body"])["model"]["source"] == "model_dir"
    finally:
        output = stop(process)
    init_lines = [json.loads(line) for line in output.splitlines() if '"model loaded"' in line]
    assert len(init_lines) == 1 and init_lines[0]["model_source"] == "model_dir"


def test_missing_model_does_not_fail_init_and_answers_model_unavailable(
    runtime_api: RuntimeApi, tmp_path: Path
) -> None:
    process = start_runtime(runtime_api, tmp_path / "no-model")
    try:
        assert runtime_api.polled.wait(timeout=WAIT_SECONDS)
        request_id = runtime_api.invoke(load_event("direct-rerank.json"))
        kind, answer, _ = runtime_api.wait_answer(request_id)
        assert (kind, answer["errorType"]) == ("error", "ModelUnavailable")
        assert str(tmp_path) not in answer["errorMessage"]
        request_id = runtime_api.invoke(load_event("http-api-health.json"))
        kind, answer, _ = runtime_api.wait_answer(request_id)
        assert (kind, answer["statusCode"]) == ("response", 503)
        assert runtime_api.init_errors == []
    finally:
        stop(process)


def test_hostile_input_gets_strict_json_answers_through_the_runtime(
    runtime_api: RuntimeApi, model_dir: Path
) -> None:
    # Given text with unpaired surrogates (half an emoji at a chunk's edge) and a number JSON allows but
    # Python reads as infinity, in events the runtime itself parses
    passages = [
        {"id": "chunk-\ud83d", "text": "ends in half an emoji \ud83d", "meta": {"\ude00": ["\udfff", "é"]}}
    ]
    direct_event = json.dumps({"query": "emoji \ud800", "passages": passages})
    http_event = load_event("function-url-root-rerank.json")
    http_event["body"] = json.dumps({"query": "q", "passages": passages})
    infinite = '{"query": "q", "passages": [{"text": "a", "meta": {"scores": [1, 1e309]}}]}'
    process = start_runtime(runtime_api, model_dir)
    try:
        assert runtime_api.polled.wait(timeout=WAIT_SECONDS)
        direct = runtime_api.invoke(direct_event)
        http = runtime_api.invoke(http_event)
        refused = runtime_api.invoke(infinite)

        # Then every answer reached the Runtime API as strict UTF-8 JSON echoing the text as sent
        kind, answer, _ = runtime_api.wait_answer(direct)
        assert kind == "response", answer
        assert [(r["id"], r["text"], r["meta"]) for r in answer["results"]] == [
            (p["id"], p["text"], p["meta"]) for p in json.loads(json.dumps(passages))
        ]
        kind, answer, _ = runtime_api.wait_answer(http)
        assert (kind, answer["statusCode"]) == ("response", 200)
        assert json.loads(answer["body"])["results"][0]["meta"] == {"\ude00": ["\udfff", "é"]}
        kind, answer, _ = runtime_api.wait_answer(refused)
        assert (kind, answer["errorType"]) == ("error", "InvalidRequest")
        assert answer["errorMessage"].startswith(
            "passages[0].meta.scores[1] is a number beyond the float range"
        )
    finally:
        stop(process)
