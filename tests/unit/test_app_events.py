"""Every events/*.json file through lambda_handler, for every caller shape, plus the handler's edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reranker import adapters
from reranker.errors import DeadlineExceeded, InternalError, ModelDownloadFailed, ModelUnavailable
from tests.events import EXPECTED, caller_of, event_files, load_event, run
from tools.invoke import LocalContext


def test_every_event_file_has_an_expectation_and_back() -> None:
    assert event_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_file_gives_the_documented_answer(app: ModuleType, name: str) -> None:
    # Given an event file as `sam local invoke -e` would send it
    event = load_event(name)
    expected = EXPECTED[name]
    assert adapters.detect_shape(event) == caller_of(name)

    # When the handler runs it
    outcome = run(app, event)

    # Then status, error type and message are the documented ones
    assert outcome.status == expected.status, outcome.body
    assert outcome.error_type == expected.error_type
    if expected.message_contains is not None:
        assert expected.message_contains in outcome.message
    if caller_of(name) != "direct":
        assert outcome.headers["Content-Type"] == "application/json"
        assert outcome.raised is None
    elif expected.error_type is not None:
        assert type(outcome.raised).__name__ == expected.error_type  # Step Functions' errorType
    if expected.results is not None:
        assert_valid_rerank_response(outcome.body, expected.results)


def assert_valid_rerank_response(body: dict[str, Any], count: int) -> None:
    assert set(body) == {"model", "results", "usage"}
    assert body["model"] == "ms-marco-TinyBERT-L-2-v2"
    results = body["results"]
    assert len(results) == count
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert all(type(score) is float and 0.0 <= score <= 1.0 for score in scores)
    assert len({result["index"] for result in results}) == count
    assert body["usage"]["passages"] >= count


def test_every_caller_shape_gets_the_same_ranking(app: ModuleType) -> None:
    answers = [
        run(app, load_event(name)).body
        for name in (
            "direct-rerank.json",
            "http-api-rerank.json",
            "function-url-rerank.json",
            "rest-api-rerank.json",
            "rest-api-rerank-proxy.json",
        )
    ]
    assert all(answer == answers[0] for answer in answers[1:])


def test_result_fields_follow_the_request(app: ModuleType) -> None:
    body = run(app, load_event("direct-rerank.json")).body
    by_id = {result["id"]: result for result in body["results"]}
    request = load_event("direct-rerank.json")
    for result in body["results"]:
        sent = request["passages"][result["index"]]
        text = sent if isinstance(sent, str) else sent["text"]
        assert result["text"] == text
        assert ("meta" in result) == (isinstance(sent, dict) and "meta" in sent)
        if isinstance(sent, str) or "id" not in sent:
            assert result["id"] == result["index"]
    assert by_id["a1"]["meta"] == {"source": "github"}


def test_return_text_false_omits_text(app: ModuleType) -> None:
    body = run(app, load_event("direct-rerank-no-text.json")).body
    assert all("text" not in result for result in body["results"])
    assert [r["index"] for r in body["results"]] != [] and body["usage"]["passages"] == 5


def test_wrong_method_lists_the_allowed_ones(app: ModuleType) -> None:
    outcome = run(app, load_event("http-api-wrong-method.json"))
    assert outcome.headers["Allow"] == "POST"


def test_correlation_id_header_is_echoed(app: ModuleType) -> None:
    outcome = run(app, load_event("http-api-rerank-plain-body.json"))
    assert outcome.headers["X-Correlation-Id"] == "req-7f3a9c"
    outcome = run(app, load_event("http-api-rerank.json"))
    assert (
        outcome.headers["X-Correlation-Id"]
        == load_event("http-api-rerank.json")["requestContext"]["requestId"]
    )


def test_health_describes_the_model_without_running_it(app: ModuleType, model_dir: Any) -> None:
    body = run(app, load_event("http-api-health.json")).body
    assert body["status"] == "ok"
    assert body["version"] == app.VERSION
    assert body["model"]["name"] == "ms-marco-TinyBERT-L-2-v2"
    assert len(body["model"]["sha256"]) == 64
    assert body["model"]["source"] == "model_dir"
    assert body["engine"]["schedule"] in ("single", "sorted_batches")
    assert body["limits"]["max_passages"] == 1000
    assert str(model_dir) not in json.dumps(body)  # no internal paths


def test_limits_come_from_settings(configure: Callable[..., ModuleType]) -> None:
    app = configure(MAX_PASSAGES="2")
    outcome = run(app, load_event("direct-rerank.json"))
    assert outcome.error_type == "PayloadTooLarge"
    assert "limit is 2" in outcome.message


def test_long_passages_are_pre_truncated_but_returned_whole(configure: Callable[..., ModuleType]) -> None:
    app = configure(MAX_PASSAGE_CHARS="50")
    long_text = "speculative decoding and batching make inference faster " * 20
    body = run(app, {"query": "fast inference", "passages": [long_text, "short one"]}).body
    assert body["results"][0]["text"] == long_text or body["results"][1]["text"] == long_text
    assert body["usage"]["passages"] == 2


# --- deadlines ---------------------------------------------------------------------------------------


def many_passages(count: int = 20) -> dict[str, Any]:
    return {
        "query": "fast llm inference",
        "passages": [f"passage number {i} about inference" for i in range(count)],
    }


def test_deadline_fallback_returns_unscored_passages_unranked(configure: Callable[..., ModuleType]) -> None:
    app = configure(DEADLINE_POLICY="fallback", DEADLINE_MARGIN_MS="500")
    # remaining time below the margin: should_stop() is already true before the first model run
    outcome = run(app, many_passages(), LocalContext(timeout_ms=100))
    results = outcome.body["results"]
    assert len(results) == 20
    unranked = [result for result in results if result.get("reranked") is False]
    assert unranked, "some passages must be left unscored"
    assert all(result["score"] is None for result in unranked)
    assert [result["index"] for result in unranked] == sorted(result["index"] for result in unranked)
    assert results[-len(unranked) :] == unranked  # after the scored ones


def test_deadline_error_policy_raises_deadline_exceeded(configure: Callable[..., ModuleType]) -> None:
    app = configure(DEADLINE_POLICY="error", DEADLINE_MARGIN_MS="500")
    with pytest.raises(DeadlineExceeded):
        app.lambda_handler(many_passages(), LocalContext(timeout_ms=100))
    event = load_event("http-api-rerank-plain-body.json")
    event["body"] = json.dumps(many_passages())
    outcome = run(app, event, LocalContext(timeout_ms=100))
    assert (outcome.status, outcome.error_type) == (504, "DeadlineExceeded")


def test_enough_time_scores_everything(configure: Callable[..., ModuleType]) -> None:
    app = configure(DEADLINE_POLICY="error")
    body = run(app, many_passages(), LocalContext(timeout_ms=60_000)).body
    assert all(result["score"] is not None and "reranked" not in result for result in body["results"])


# --- server faults -----------------------------------------------------------------------------------


def test_missing_model_answers_503_and_never_crashes(
    configure: Callable[..., ModuleType], tmp_path: Any
) -> None:
    app = configure(MODEL_DIR=str(tmp_path / "no-such-model"))
    for name in ("http-api-rerank.json", "http-api-health.json", "rest-api-rerank.json"):
        outcome = run(app, load_event(name))
        assert (outcome.status, outcome.error_type) == (503, "ModelUnavailable")
        assert "ModelNotConfigured" in outcome.message
        assert str(tmp_path) not in outcome.message
    assert run(app, load_event("http-api-unknown-route.json")).status == 404
    with pytest.raises(ModelUnavailable) as raised:
        app.lambda_handler(load_event("direct-rerank.json"), LocalContext())
    assert type(raised.value) is ModelUnavailable


def test_broken_model_under_snapstart_fails_the_init(
    configure: Callable[..., ModuleType], tmp_path: Any
) -> None:
    with pytest.raises(ModelUnavailable):
        configure(MODEL_DIR=str(tmp_path / "missing"), AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")


def test_transient_download_failure_is_retried_by_a_later_request(
    configure: Callable[..., ModuleType], monkeypatch: pytest.MonkeyPatch, model_dir: Any
) -> None:
    from reranker import runtime

    real_locate = runtime.locate_model
    calls = {"count": 0}

    def flaky_locate(settings: Any, **kwargs: Any) -> Any:
        calls["count"] += 1
        if calls["count"] == 1:
            raise ModelDownloadFailed("S3 kept failing")
        return real_locate(settings, **kwargs)

    monkeypatch.setattr(runtime, "locate_model", flaky_locate)
    app = configure(force=True, MODEL_LOAD_RETRY_SECONDS="0")
    assert isinstance(app.STATE.runtime, runtime.Failed)
    assert run(app, load_event("direct-rerank.json")).status == 200
    assert calls["count"] == 2


def test_unexpected_exception_is_a_generic_500(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = app.STATE.runtime.engine

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail /var/task/x.py")

    monkeypatch.setattr(engine, "score", explode)
    outcome = run(app, load_event("http-api-rerank.json"))
    assert (outcome.status, outcome.error_type) == (500, "InternalError")
    assert "secret" not in outcome.message and "/var/task" not in outcome.message

    with pytest.raises(InternalError) as raised:
        app.lambda_handler(load_event("direct-rerank.json"), LocalContext())
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "secret" not in str(raised.value)


def test_response_above_the_lambda_limit_is_a_clear_413(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters, "LAMBDA_PAYLOAD_LIMIT_BYTES", 600)
    outcome = run(app, load_event("http-api-rerank.json"))
    assert (outcome.status, outcome.error_type) == (413, "PayloadTooLarge")
    assert "top_k" in outcome.message and '"return_text": false' in outcome.message
    cohere = run(app, load_event("cohere-v1-rerank.json"))
    assert cohere.status == 413 and '"return_documents": false' in cohere.message
    with pytest.raises(Exception) as raised:
        app.lambda_handler(load_event("direct-rerank.json"), LocalContext())
    assert type(raised.value).__name__ == "PayloadTooLarge"


# --- property: whatever the body, the answer is a success or a documented 4xx -----------------------------


bodies = st.text(max_size=300) | st.builds(
    json.dumps,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["query", "passages", "top_k", "return_text", "text", "id", "meta", "x"]),
                children,
                max_size=5,
            )
        ),
        max_leaves=15,
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_http_body_gets_200_or_a_documented_4xx(app: ModuleType, body: str) -> None:
    event = load_event("http-api-rerank-plain-body.json")
    event["body"] = body
    outcome = run(app, event)
    if outcome.status == 200:
        assert set(outcome.body) == {"model", "results", "usage"}
    else:
        assert (outcome.status, outcome.error_type) in {(400, "InvalidRequest"), (413, "PayloadTooLarge")}


# --- Function URLs are called at their root --------------------------------------------------------------


def with_path(event: dict[str, Any], path: str) -> dict[str, Any]:
    if "httpMethod" in event:  # REST API
        event["resource"] = event["path"] = event["requestContext"]["resourcePath"] = path
    else:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    return event


def test_a_function_url_reranks_at_its_root_like_at_rerank(app: ModuleType) -> None:
    root = run(app, load_event("function-url-root-rerank.json"))
    named = run(app, with_path(load_event("function-url-root-rerank.json"), "/rerank"))
    assert root.status == 200 and root.body == named.body
    # Only POST: a GET of the root is 405 with the method to use
    get_root = run(app, with_path(load_event("function-url-health.json"), "/"))
    assert (get_root.status, get_root.error_type, get_root.headers["Allow"]) == (
        405,
        "MethodNotAllowed",
        "POST",
    )


@pytest.mark.parametrize("name", ["http-api-rerank-plain-body.json", "rest-api-rerank.json"])
def test_api_gateway_routes_have_no_root(app: ModuleType, name: str) -> None:
    outcome = run(app, with_path(load_event(name), "/"))
    assert (outcome.status, outcome.error_type) == (404, "RouteNotFound")
    routes = outcome.message.split("routes: ", 1)[1].split(", ")
    assert "POST /rerank" in routes and "POST /" not in routes
