"""Log lines and EMF records: the fields operators need, and never the query or passage text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reranker import observability
from reranker.runtime import Ready
from tests.events import load_event, run
from tools.invoke import LocalContext

Output = Callable[[], tuple[str, list[dict[str, Any]]]]
REPO = Path(__file__).resolve().parents[2]


def records(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == message]


def emf(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Metric name -> the EMF record carrying it."""
    found: dict[str, Any] = {}
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "Reranker"
            for metric in directive["Metrics"]:
                found[metric["Name"]] = line
    return found


def texts_of(event_name: str) -> list[str]:
    event = load_event(event_name)
    body = event if "requestContext" not in event else None
    if body is None:
        raw = event["body"]
        if event.get("isBase64Encoded"):
            import base64

            raw = base64.b64decode(raw).decode()
        body = json.loads(raw)
    passages = [p if isinstance(p, str) else p["text"] for p in body["passages"]]
    return [body["query"], *passages]


def test_request_log_line_has_the_operational_fields(
    configure: Callable[..., ModuleType], output: Output
) -> None:
    app = configure(force=True)  # a fresh init: cold start, model load metric pending
    output()
    run(app, load_event("http-api-rerank-plain-body.json"), LocalContext(request_id="req-1"))
    _, lines = output()
    (done,) = records(lines, "request done")
    assert done["cold_start"] is True
    assert done["function_request_id"] == "req-1"
    assert done["correlation_id"] == "req-7f3a9c"
    assert done["caller"] == "http_api"
    assert done["model"] == "ms-marco-TinyBERT-L-2-v2"
    assert (done["passages"], done["top_k"], done["returned"], done["status"]) == (5, 3, 3, 200)
    for field in ("tokens", "truncated", "pre_truncated", "tokenize_ms", "inference_ms", "total_ms"):
        assert isinstance(done[field], int | float), field
    assert done["level"] == "INFO" and done["service"] == "reranker"

    metrics = emf(lines)
    for name in ("ColdStart", "ModelLoadTime", "Latency", "Passages", "Tokens", "TruncatedPassages"):
        assert name in metrics, name
    assert metrics["Passages"]["Passages"] == [5.0]

    run(app, load_event("http-api-rerank-plain-body.json"))
    _, lines = output()
    (done,) = records(lines, "request done")
    assert done["cold_start"] is False
    assert "ModelLoadTime" not in emf(lines) and "ColdStart" not in emf(lines)


@pytest.mark.parametrize(
    ("event_name", "correlation_id"),
    [
        ("direct-rerank.json", "demo-0001"),
        ("http-api-rerank.json", "Cf3kTgM0oAMEVNw="),
        ("rest-api-rerank.json", None),
    ],
)
def test_correlation_id_per_caller(
    app: ModuleType, output: Output, event_name: str, correlation_id: str | None
) -> None:
    output()
    run(app, load_event(event_name))
    _, lines = output()
    (done,) = records(lines, "request done")
    expected = correlation_id or load_event(event_name)["requestContext"]["requestId"]
    assert done["correlation_id"] == expected


@pytest.mark.parametrize(
    "event_name",
    ["http-api-rerank.json", "direct-rerank.json", "http-api-bad-passage.json", "rest-api-rerank.json"],
)
def test_no_query_or_passage_text_in_any_output(app: ModuleType, output: Output, event_name: str) -> None:
    output()
    run(app, load_event(event_name))
    text, lines = output()
    assert records(lines, "request done")
    for secret in texts_of(event_name):
        if isinstance(secret, str) and len(secret) > 4:  # "fine": short words could match field names
            assert secret not in text


def test_server_errors_log_the_stack_but_not_the_text(
    app: ModuleType, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.STATE.runtime.engine, "score", explode)
    output()
    run(app, load_event("http-api-rerank.json"))
    text, lines = output()
    (logged,) = records(lines, "unexpected error")
    assert logged["level"] == "ERROR" and "RuntimeError: boom" in logged["exception"]
    assert emf(lines)["ServerErrors"]["ErrorType"] == "InternalError"
    for secret in texts_of("http-api-rerank.json"):
        assert secret not in text


def test_invalid_requests_are_counted_by_type(app: ModuleType, output: Output) -> None:
    output()
    run(app, load_event("http-api-bad-passage.json"))
    run(app, load_event("http-api-wrong-content-type.json"))
    _, lines = output()
    counted = [line["ErrorType"] for line in lines if "InvalidRequests" in line]
    assert counted == ["InvalidRequest", "UnsupportedMediaType"]
    rejected = records(lines, "request rejected")
    assert rejected[0]["error"] == "passages[1].text must be a string, got a number"


def test_deadline_fallback_warns_and_counts(configure: Callable[..., ModuleType], output: Output) -> None:
    app = configure(DEADLINE_POLICY="fallback")
    output()
    run(app, {"query": "q", "passages": ["a b", "c d"]}, LocalContext(timeout_ms=10))
    _, lines = output()
    (warning,) = records(lines, "deadline reached: unscored passages returned unranked")
    assert warning["level"] == "WARNING" and warning["unscored"] == 2
    assert emf(lines)["DeadlineFallbacks"]["DeadlineFallbacks"] == [1.0]


def test_log_payloads_switch_shows_the_text_for_debugging(
    configure: Callable[..., ModuleType], output: Output
) -> None:
    app = configure(LOG_PAYLOADS="true")
    output()
    run(app, load_event("direct-rerank.json"))
    _, lines = output()
    (payload,) = records(lines, "request payload (LOG_PAYLOADS)")
    assert payload["query"] == "how to speed up llm inference"


def test_init_logs_where_the_model_came_from(configure: Callable[..., ModuleType], output: Output) -> None:
    output()
    app = configure(force=True)
    _, lines = output()
    (loaded,) = records(lines, "model loaded")
    assert loaded["model_source"] == "model_dir"
    assert len(loaded["onnx_sha256"]) == 64
    assert loaded["load_seconds"] > 0
    assert isinstance(app.STATE.runtime, Ready)


def test_init_failure_is_logged_once_clearly(
    configure: Callable[..., ModuleType], output: Output, tmp_path: Path
) -> None:
    output()
    configure(MODEL_DIR=str(tmp_path / "nope"))
    text, lines = output()
    (failed,) = [line for line in lines if line.get("message", "").startswith("model unavailable")]
    assert failed["level"] == "ERROR" and failed["error_type"] == "ModelNotConfigured"
    assert "Traceback" not in text


# --- tracing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_is_enabled_only_on_lambda_and_not_disabled(environ: dict[str, str], enabled: bool) -> None:
    assert observability.tracing_enabled(environ) is enabled


def test_no_tracing_is_a_complete_no_op() -> None:
    tracing = observability.NoTracing()

    def handler(event: Any, context: Any) -> str:
        return "ok"

    assert tracing.capture_handler(handler) is handler
    with tracing.subsegment("## x"):
        tracing.annotate("k", 1)
        tracing.metadata("k", {"a": 1})


PROBE = """
import json, sys, time
started = time.perf_counter()
import reranker.app as app
seconds = time.perf_counter() - started
event = json.load(open(sys.argv[1]))
from tools.invoke import LocalContext
answer = app.lambda_handler(event, LocalContext())
print(json.dumps({"xray": "aws_xray_sdk" in sys.modules, "tracing": type(app.tracing).__name__,
                  "results": len(answer["results"]), "seconds": seconds}))
"""


@pytest.mark.parametrize(
    ("extra_env", "xray"),
    [({"POWERTOOLS_TRACE_DISABLED": "true"}, False), ({"LAMBDA_TASK_ROOT": "/var/task"}, True)],
)
def test_aws_xray_sdk_is_imported_only_when_tracing_is_on(
    model_dir: Path, extra_env: dict[str, str], xray: bool
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "LAMBDA_TASK_ROOT", "AWS_", "_X_AMZN", "PYTEST"))
    }
    env.update(
        {
            "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}",
            "MODEL_DIR": str(model_dir),
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
            **extra_env,
        }
    )
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "events" / "direct-rerank.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    assert probe["xray"] is xray
    assert probe["tracing"] == ("XRayTracing" if xray else "NoTracing")
    assert probe["results"] == 3
