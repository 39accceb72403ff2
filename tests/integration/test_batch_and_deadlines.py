"""Through lambda_handler: batches, Distributed Map batches, deadlines (also mid-batch), long documents."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from reranker.errors import InvalidRequest, PayloadTooLarge
from tests.events import load_event, run
from tests.models import fixture_model
from tools.invoke import LocalContext

Output = Callable[[], tuple[str, list[dict[str, Any]]]]
QUERY = "how to speed up llm inference"
PASSAGES = [f"passage {index} about fast inference and batching" for index in range(10)]


def single(app: ModuleType, payload: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(payload, LocalContext())
    return response


def records(lines: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("message") == message]


def emf_values(lines: list[dict[str, Any]], name: str) -> list[float]:
    return [value for line in lines if "_aws" in line and name in line for value in line[name]]


# --- {"requests": [...]} -----------------------------------------------------------------------------


def test_batch_answers_each_request_in_order_like_single_requests(app: ModuleType) -> None:
    event = load_event("batch-requests.json")
    answer = app.lambda_handler(event, LocalContext())
    responses = answer["responses"]
    assert len(responses) == len(event["requests"])
    for request, response in zip(event["requests"], responses, strict=True):
        if request["query"]:
            assert response == single(app, request)
    assert responses[2] == {"error": {"type": "InvalidRequest", "message": "query must not be empty"}}
    assert responses[3]["usage"]["windows"] == 2


def test_batch_over_http_is_the_same_answer(app: ModuleType) -> None:
    batch = load_event("batch-requests.json")
    event = load_event("http-api-rerank-plain-body.json")
    event["body"] = json.dumps(batch)
    outcome = run(app, event)
    assert outcome.status == 200
    assert outcome.body == app.lambda_handler(batch, LocalContext())


def test_batch_size_is_bounded_by_max_batch_requests(configure: Callable[..., ModuleType]) -> None:
    app = configure(MAX_BATCH_REQUESTS="3")
    request = {"query": QUERY, "passages": PASSAGES[:2]}
    assert len(app.lambda_handler({"requests": [request] * 3}, LocalContext())["responses"]) == 3
    with pytest.raises(PayloadTooLarge, match="requests has 4 requests; the limit is 3"):
        app.lambda_handler({"requests": [request] * 4}, LocalContext())


def test_an_unknown_envelope_field_is_rejected(app: ModuleType) -> None:
    with pytest.raises(InvalidRequest, match="'top_k'"):
        app.lambda_handler({"requests": [], "top_k": 3}, LocalContext())
    assert app.lambda_handler({"requests": []}, LocalContext()) == {"responses": []}


def test_batch_metrics_and_log_keys_are_emitted_once(app: ModuleType, output: Output) -> None:
    output()
    app.lambda_handler(load_event("batch-requests.json"), LocalContext())
    _, lines = output()
    assert emf_values(lines, "BatchRequests") == [4.0]
    assert emf_values(lines, "BatchItemErrors") == [1.0]
    assert emf_values(lines, "Passages") == [4.0 + 2 + 2]
    (done,) = records(lines, "request done")
    assert (done["batch_requests"], done["batch_item_errors"], done["correlation_id"]) == (4, 1, "batch-0001")


# --- Step Functions Distributed Map: ItemBatcher input ---------------------------------------------------


def test_item_batcher_input_gets_one_response_per_item_with_batch_input_defaults(app: ModuleType) -> None:
    event = load_event("distributed-map-items.json")
    responses = app.lambda_handler(event, LocalContext())["responses"]
    assert len(responses) == 3
    first, second, third = responses
    assert len(first["results"]) == 2 and all("text" not in r for r in first["results"])  # BatchInput
    assert len(second["results"]) == 1  # the item's own top_k wins over BatchInput's
    assert third["error"]["type"] == "InvalidRequest"
    assert first == single(app, {**event["BatchInput"], **event["Items"][0]})
    json.dumps(responses, allow_nan=False)


def test_an_item_batcher_answer_above_the_state_limit_fails_with_advice(app: ModuleType) -> None:
    big = {"query": QUERY, "passages": ["x" * 2000] * 40}
    with pytest.raises(PayloadTooLarge, match="256 KB state limit"):
        app.lambda_handler({"Items": [big] * 5}, LocalContext())
    assert len(app.lambda_handler({"requests": [big] * 5}, LocalContext())["responses"]) == 5


def test_the_batch_state_machine_reads_the_responses_key() -> None:
    from pathlib import Path

    definition = (Path(__file__).resolve().parents[2] / "statemachine" / "batch-rerank.asl.json").read_text()
    task = json.loads(definition)["States"]["RerankEachRequest"]["ItemProcessor"]["States"]["RerankBatch"]
    assert task["ResultSelector"] == {"responses.$": "$.Payload.responses"}


# --- deadlines -------------------------------------------------------------------------------------


class FakeClock:
    """The scoring policy's clock: every reading advances 1 ms, so each model run costs 1 ms."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def test_a_short_remaining_time_returns_every_passage_unranked(configure: Callable[..., ModuleType]) -> None:
    app = configure(DEADLINE_POLICY="fallback", DEADLINE_MARGIN_MS="500")
    answer = app.lambda_handler({"query": QUERY, "passages": PASSAGES}, LocalContext(timeout_ms=200))
    assert [r["index"] for r in answer["results"]] == list(range(10))
    assert all(r["score"] is None and r["reranked"] is False for r in answer["results"])


def test_later_batch_items_are_answered_unranked_once_time_runs_out(
    configure: Callable[..., ModuleType], fake_clock: FakeClock, output: Output
) -> None:
    # Given 25 ms of budget (remaining 525 ms - 500 ms margin) and four requests of ten passages: each
    # request reads the clock once before scoring and once per model run, so 11 ms each
    app = configure(DEADLINE_POLICY="fallback", DEADLINE_MARGIN_MS="500", clock=fake_clock.monotonic)
    context = types.SimpleNamespace(**vars(LocalContext()))
    context.get_remaining_time_in_millis = lambda: 525
    output()
    answer = app.lambda_handler({"requests": [{"query": QUERY, "passages": PASSAGES}] * 4}, context)
    _, lines = output()
    first, second, third, fourth = answer["responses"]
    # Then the first two are fully ranked, the third partly, the fourth not at all, and none is lost
    assert all(r["score"] is not None for r in first["results"] + second["results"])
    assert 0 < sum(r["score"] is None for r in third["results"]) < 10
    assert all(r.get("reranked") is False for r in fourth["results"])
    assert [len(response["results"]) for response in answer["responses"]] == [10] * 4
    # And one warning per degraded request, and metrics for them
    warnings = records(lines, "deadline reached: unscored passages returned unranked")
    assert [warning["batch_item"] for warning in warnings] == [2, 3]
    assert emf_values(lines, "DeadlineFallbacks") == [2.0]
    assert emf_values(lines, "UnscoredPassages") == [
        float(sum(r["score"] is None for r in third["results"]) + 10)
    ]


def test_with_the_error_policy_late_batch_items_fail_alone(
    configure: Callable[..., ModuleType], fake_clock: FakeClock
) -> None:
    app = configure(DEADLINE_POLICY="error", DEADLINE_MARGIN_MS="500", clock=fake_clock.monotonic)
    context = types.SimpleNamespace(**vars(LocalContext()))
    context.get_remaining_time_in_millis = lambda: 525
    answer = app.lambda_handler({"requests": [{"query": QUERY, "passages": PASSAGES}] * 4}, context)
    kinds = [response.get("error", {}).get("type") for response in answer["responses"]]
    assert kinds == [None, None, "DeadlineExceeded", "DeadlineExceeded"]


def test_cohere_routes_keep_every_document_when_time_runs_out(configure: Callable[..., ModuleType]) -> None:
    app = configure(DEADLINE_POLICY="fallback", DEADLINE_MARGIN_MS="500")
    event = load_event("cohere-v2-rerank.json")
    event["body"] = json.dumps({"model": "m", "query": QUERY, "documents": PASSAGES[:3]})
    outcome = run(app, event, LocalContext(timeout_ms=100))
    assert outcome.status == 200
    assert outcome.body["results"] == [{"index": i, "relevance_score": 0.0} for i in range(3)]
    assert "3 documents were not scored" in outcome.body["meta"]["warnings"][0]


def test_a_huge_request_with_700_ms_left_answers_with_half_the_margin_to_spare(
    configure: Callable[..., ModuleType],
) -> None:
    # Given 1000 passages of 3 900 characters (tokenizing them all takes longer than the 200 ms of budget
    # that 700 ms remaining minus the 500 ms margin leaves) and a real Lambda-like clock
    app = configure(DEADLINE_POLICY="fallback", DEADLINE_MARGIN_MS="500")
    text = ("retrieval augmented generation latency passage tokenizer reranker " * 60)[:3900]
    context = LocalContext(timeout_ms=700)
    # When the function answers
    answer = app.lambda_handler({"query": QUERY, "passages": [text] * 1000, "return_text": False}, context)
    # Then at least half of the 500 ms margin is still left, and every passage is in the answer
    left = context.get_remaining_time_in_millis()
    assert left >= 250, left
    assert len(answer["results"]) == 1000
    assert any(result["score"] is None for result in answer["results"])


def test_the_default_policy_is_the_fallback(app: ModuleType) -> None:
    assert app.STATE.runtime.settings.deadline_policy == "fallback"


# --- long documents ----------------------------------------------------------------------------------


def marker_document(position_words: int, total_words: int = 1500) -> str:
    words = ["filler"] * total_words
    words[position_words] = "zeppelin"
    return " ".join(words)


def test_a_sentence_past_token_512_is_found_in_window_mode_and_missed_when_truncating(
    configure: Callable[..., ModuleType],
) -> None:
    # Given the marker model (score ~1 iff it sees "zeppelin") and the word at about token 1600
    app = configure(MODEL_DIR=str(fixture_model("marker")))
    passages = [marker_document(800), "a short passage"]
    # When truncating (the default), the model never sees it
    truncated = app.lambda_handler({"query": "q", "passages": passages}, LocalContext())
    assert truncated["results"][0]["index"] == 0 or truncated["results"][0]["score"] < 0.01
    by_index = {r["index"]: r["score"] for r in truncated["results"]}
    assert by_index[0] < 0.01
    assert truncated["usage"]["truncated"] == 1 and truncated["usage"]["windows"] == 2
    # When the request asks for windows, it is found, and usage counts the windows scored
    windowed = app.lambda_handler(
        {"query": "q", "passages": passages, "long_documents": "window"}, LocalContext()
    )
    assert windowed["results"][0]["index"] == 0 and windowed["results"][0]["score"] > 0.99
    assert windowed["usage"]["windows"] > 3 and windowed["usage"]["truncated"] == 0


def test_the_deployment_setting_chooses_windows_and_requests_can_opt_out(
    configure: Callable[..., ModuleType],
) -> None:
    app = configure(MODEL_DIR=str(fixture_model("marker")), LONG_DOCUMENTS="window")
    passages = [marker_document(800)]
    assert (
        app.lambda_handler({"query": "q", "passages": passages}, LocalContext())["results"][0]["score"] > 0.99
    )
    opted_out = app.lambda_handler(
        {"query": "q", "passages": passages, "long_documents": "truncate"}, LocalContext()
    )
    assert opted_out["results"][0]["score"] < 0.01


def test_cohere_v1_max_chunks_per_doc_is_window_mode_with_that_bound(
    configure: Callable[..., ModuleType],
) -> None:
    app = configure(MODEL_DIR=str(fixture_model("marker")))
    event = load_event("cohere-v1-rerank.json")

    def score(chunks: int | None) -> float:
        body: dict[str, Any] = {"query": "q", "documents": [marker_document(600, 3000)]}
        if chunks is not None:
            body["max_chunks_per_doc"] = chunks
        event["body"] = json.dumps(body)
        outcome = run(app, event)
        assert outcome.status == 200, outcome.body
        return float(outcome.body["results"][0]["relevance_score"])

    assert score(None) < 0.01  # truncation: the deployment default
    assert score(2) < 0.01  # two windows end before token 1200
    assert score(3) > 0.99


def test_an_unknown_long_documents_mode_is_a_400(app: ModuleType) -> None:
    with pytest.raises(InvalidRequest, match="long_documents must be one of truncate, window"):
        app.lambda_handler({"query": "q", "passages": ["a"], "long_documents": "split"}, LocalContext())


@pytest.mark.parametrize("family", ["rank-T5-flan", "ms-marco-MultiBERT-L-12", "miniReranker_arabic_v1"])
def test_window_mode_and_max_chunks_per_doc_work_for_every_family(
    configure: Callable[..., ModuleType], family: str
) -> None:
    # Given a T5-style or multilingual model and a passage far past its token limit
    app = configure(MODEL_DIR=str(fixture_model("int8", family)))
    long_text = " ".join(["retrieval", "passage", "Привет", "東京", "café"] * 600)
    passages = [long_text, "a short passage"]
    # When a native request asks for windows, it is answered, each window scored
    windowed = app.lambda_handler(
        {"query": "q", "passages": passages, "long_documents": "window"}, LocalContext()
    )
    assert windowed["usage"]["windows"] > 3
    assert all(isinstance(result["score"], float) for result in windowed["results"])
    # and the short passage keeps its truncate-mode score exactly
    truncated = app.lambda_handler({"query": "q", "passages": passages}, LocalContext())
    short_scores = [
        {r["index"]: r["score"] for r in answer["results"]}[1] for answer in (windowed, truncated)
    ]
    assert short_scores[0] == short_scores[1]
    # When a Cohere v1 caller bounds the chunks, it is answered too
    event = load_event("cohere-v1-rerank.json")
    event["body"] = json.dumps({"query": "q", "documents": passages, "max_chunks_per_doc": 2})
    outcome = run(app, event)
    assert outcome.status == 200, outcome.body


def test_a_window_mode_the_model_cannot_apply_is_a_400_naming_the_mode(
    configure: Callable[..., ModuleType],
) -> None:
    # Given a T5-style model held to 3 tokens: its 2 template tokens and the query leave no room for a window
    app = configure(MODEL_DIR=str(fixture_model("int8", "rank-T5-flan")), ENGINE_MAX_LENGTH="3")
    passages = ["one two three four five six"]
    # Then truncation still answers, and window mode is the caller's 400, never a 503
    assert app.lambda_handler({"query": "q", "passages": passages}, LocalContext())["results"]
    with pytest.raises(
        InvalidRequest, match='long_documents "window" cannot be used with the model rank-T5-flan'
    ):
        app.lambda_handler({"query": "q", "passages": passages, "long_documents": "window"}, LocalContext())
    event = load_event("cohere-v1-rerank.json")
    event["body"] = json.dumps({"query": "q", "documents": passages, "max_chunks_per_doc": 1})
    outcome = run(app, event)
    assert outcome.status == 400, outcome.body
    assert "max_chunks_per_doc cannot be used" in outcome.body["message"]
