"""TEI's rerank API on POST /rerank: parsing, the bare ranked list, raw logits, truncate, TEI's error bodies."""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reranker import tei
from reranker.engine import CrossEncoder, EngineOptions
from reranker.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    ModelUnavailable,
    PayloadTooLarge,
)
from reranker.logits import logits_to_scores, raw_logits, sigmoid
from reranker.schemas import Limits
from tests.models import fixture_model
from tools.invoke import LocalContext
from tools.serve import http_api_event

LIMITS = Limits(max_passages=5, max_passage_chars=100, max_query_chars=40, max_total_chars=400)
ZEPPELIN = "the zeppelin crossed the sea"  # the marker model: logit 6 with the word, -6 without


def post(app: ModuleType, body: object, path: str = "/rerank") -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event = http_api_event(
        method="POST", target=path, headers=[("content-type", "application/json")], body=raw, source_ip="::1"
    )
    response = app.lambda_handler(event, LocalContext())
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def marker_app(configure: Any) -> ModuleType:
    return configure(MODEL_DIR=str(fixture_model("marker")))


# --- parsing ----------------------------------------------------------------------------------------------


def test_a_body_with_texts_and_no_passages_is_tei() -> None:
    assert tei.is_tei_request({"query": "q", "texts": []})
    assert not tei.is_tei_request({"query": "q", "passages": []})
    assert not tei.is_tei_request({"query": "q", "texts": [], "passages": []})  # native: texts is unknown
    assert not tei.is_tei_request(["texts"])


def test_defaults_follow_tei() -> None:
    request = tei.parse_tei_request({"query": "q", "texts": ["a", "b"]}, LIMITS)
    assert (request.raw_scores, request.return_text, request.truncate) == (False, False, True)
    assert request.texts == ("a", "b")
    assert [passage.text for passage in request.native.passages] == ["a", "b"]
    # null is "not sent", as serde's Option reads it; unknown fields are ignored as TEI ignores them
    request = tei.parse_tei_request(
        {"query": "q", "texts": ["a"], "truncate": None, "truncation_direction": "Right", "model": "x"},
        LIMITS,
    )
    assert request.truncate is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": ["a"]}, "query is required"),
        ({"query": 3, "texts": ["a"]}, "query must be a string"),
        ({"query": " ", "texts": ["a"]}, "query must not be empty"),
        ({"query": "q", "texts": "a"}, "texts must be a list of strings"),
        ({"query": "q", "texts": ["a", None]}, "texts[1] must be a string"),
        ({"query": "q", "texts": []}, "`texts` cannot be empty"),
        ({"query": "q", "texts": ["a"], "raw_scores": "yes"}, "raw_scores must be true or false"),
        ({"query": "q", "texts": ["a"], "return_text": 1}, "return_text must be true or false"),
        ({"query": "q", "texts": ["a"], "truncate": 0}, "truncate must be true or false"),
        ({"query": "q", "texts": ["a"], "truncation_direction": "Left"}, "Left is not supported"),
        ({"query": "q", "texts": ["a"], "truncation_direction": 1}, "Right or Left"),
    ],
)
def test_bad_bodies_are_invalid_requests(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        tei.parse_tei_request(body, LIMITS)
    assert message in raised.value.public_message


def test_limits_are_payload_too_large_in_tei_words() -> None:
    with pytest.raises(PayloadTooLarge, match=r"batch size 6 > maximum allowed batch size 5"):
        tei.parse_tei_request({"query": "q", "texts": ["a"] * 6}, LIMITS)
    with pytest.raises(PayloadTooLarge, match=r"query and texts exceed 400 characters.*texts\[3\]"):
        tei.parse_tei_request({"query": "q", "texts": ["x" * 100] * 5}, LIMITS)


def test_error_statuses_and_bodies_are_teis() -> None:
    assert tei.error_status_and_body(InvalidRequest("bad")) == (
        422,
        {"error": "bad", "error_type": "validation"},
    )
    assert tei.error_status_and_body(PayloadTooLarge("big")) == (
        413,
        {"error": "big", "error_type": "validation"},
    )
    assert tei.error_status_and_body(ModelUnavailable("down")) == (
        503,
        {"error": "down", "error_type": "unhealthy"},
    )
    assert tei.error_status_and_body(DeadlineExceeded("late"))[0] == 504
    assert tei.error_status_and_body(InternalError("oops")) == (
        500,
        {"error": "oops", "error_type": "backend"},
    )


# --- answers ------------------------------------------------------------------------------------------------


def test_answer_is_a_bare_list_best_first(marker_app: ModuleType) -> None:
    texts = ["a cat", ZEPPELIN, "a dog", ZEPPELIN + " twice"]
    status, body = post(marker_app, {"query": "airships", "texts": texts})
    assert status == 200
    assert isinstance(body, list)
    assert [rank["index"] for rank in body] == [1, 3, 0, 2]  # ties keep input order
    assert all(set(rank) == {"index", "score"} for rank in body)
    assert body[0]["score"] == pytest.approx(sigmoid(6.0))
    assert body[-1]["score"] == pytest.approx(sigmoid(-6.0))


def test_raw_scores_are_the_logits_and_return_text_echoes(marker_app: ModuleType) -> None:
    texts = ["a cat", ZEPPELIN]
    status, body = post(
        marker_app, {"query": "airships", "texts": texts, "raw_scores": True, "return_text": True}
    )
    assert status == 200
    assert body == [
        {"index": 1, "score": 6.0, "text": ZEPPELIN},
        {"index": 0, "score": -6.0, "text": "a cat"},
    ]


def test_same_scores_as_the_native_route(app: ModuleType) -> None:
    texts = ["vLLM serves LLMs fast", "sourdough needs a starter", "speculative decoding cuts latency"]
    _, native = post(app, {"query": "llm inference", "passages": texts})
    _, teis = post(app, {"query": "llm inference", "texts": texts})
    assert [(r["index"], r["score"]) for r in native["results"]] == [(r["index"], r["score"]) for r in teis]
    # raw logits are the scores' logits, from the same model run
    _, raw = post(app, {"query": "llm inference", "texts": texts, "raw_scores": True})
    by_index = {rank["index"]: rank["score"] for rank in raw}
    for result in native["results"]:
        assert sigmoid(by_index[result["index"]]) == pytest.approx(result["score"], rel=1e-12)


def test_raw_scores_bypass_the_warm_cache(configure: Any) -> None:
    cached_app = configure(SCORE_CACHE_MB="1")
    body = {"query": "llm inference", "texts": ["vLLM serves LLMs fast", "sourdough"]}
    _, first = post(cached_app, body)
    _, again = post(cached_app, {**body, "raw_scores": True})  # every score is cached now, no logit is
    assert [rank["index"] for rank in again] == [rank["index"] for rank in first]
    for probability, logit in zip(first, again, strict=True):
        assert math.isclose(probability["score"], sigmoid(logit["score"]), rel_tol=1e-12)
        assert logit["score"] < 0 or logit["score"] > 0  # a logit, not a cached probability


def test_truncate_false_refuses_an_over_long_text_with_413(app: ModuleType) -> None:
    texts = ["short text", "word " * 600]
    status, body = post(app, {"query": "q", "texts": texts, "truncate": False})
    assert status == 413
    assert body["error_type"] == "validation"
    assert body["error"].startswith("`inputs` must have less than 512 tokens. Given: ")
    assert "texts[1]" in body["error"]
    # truncated (the default, and true) it is scored
    for truncate in (True, None):
        status, body = post(app, {"query": "q", "texts": texts, "truncate": truncate})
        assert status == 200 and len(body) == 2


def test_truncate_false_reads_unpaired_surrogates_like_every_other_route(app: ModuleType) -> None:
    # Half an emoji (JSON \ud83d) in the query and a text: measured as U+FFFD, as the scoring reads it
    raw = b'{"query": "q \\ud83d", "texts": ["half an emoji \\ud83d", "word"], "truncate": false}'
    status, body = post(app, raw)
    assert status == 200
    assert sorted(rank["index"] for rank in body) == [0, 1]
    long_status, long_body = post(
        app, b'{"query": "q", "texts": ["\\ud83d ' + b"word " * 600 + b'"], "truncate": false}'
    )
    assert long_status == 413 and "texts[0]" in long_body["error"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": "q", "texts": [1]}, 422),
        ({"query": "q", "texts": []}, 422),
        ({"query": "", "texts": ["a"]}, 422),
        ({"query": "q", "texts": ["a"] * 1001}, 413),
        ({"query": "q" * 3000, "texts": ["a"]}, 413),
    ],
)
def test_errors_come_in_teis_shape(app: ModuleType, body: object, status: int) -> None:
    got_status, got = post(app, body)
    assert got_status == status
    assert set(got) == {"error", "error_type"}
    assert got["error_type"] == "validation"


def test_native_bodies_keep_native_errors(app: ModuleType) -> None:
    status, body = post(app, {"query": "q", "texts": ["a"], "passages": ["a"]})
    assert status == 400
    assert body["error"]["type"] == "InvalidRequest"
    assert "'texts'" in body["error"]["message"]
    status, body = post(app, b"{not json")  # unreadable: nobody can tell it was meant for TEI
    assert status == 400 and body["error"]["type"] == "InvalidRequest"


def test_the_deadline_is_an_error_even_with_the_fallback_policy(configure: Any) -> None:
    deadline_app = configure(DEADLINE_POLICY="fallback")
    event = http_api_event(
        method="POST",
        target="/rerank",
        headers=[("content-type", "application/json")],
        body=json.dumps({"query": "q", "texts": ["a", "b"]}).encode(),
        source_ip="::1",
    )
    response = deadline_app.lambda_handler(event, LocalContext(timeout_ms=100))  # below the margin
    assert response["statusCode"] == 504
    assert json.loads(response["body"])["error_type"] == "overloaded"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=12), raw=st.booleans())
def test_every_text_comes_back_once_sorted_by_score(app: ModuleType, texts: list[str], raw: bool) -> None:
    status, body = post(app, {"query": "what is it", "texts": texts, "raw_scores": raw, "return_text": True})
    assert status == 200
    assert sorted(rank["index"] for rank in body) == list(range(len(texts)))
    scores = [rank["score"] for rank in body]
    assert scores == sorted(scores, reverse=True)
    assert all(rank["text"] == texts[rank["index"]] for rank in body)
    assert raw or all(0.0 <= score <= 1.0 for score in scores)


# --- the engine's raw logits --------------------------------------------------------------------------------


@given(
    st.lists(
        st.lists(st.floats(-50, 50), min_size=2, max_size=2)
        | st.lists(st.floats(-50, 50), min_size=1, max_size=1),
        min_size=1,
        max_size=8,
    ).filter(lambda rows: len({len(row) for row in rows}) == 1)
)
def test_each_score_is_the_logistic_function_of_its_raw_logit(rows: list[list[float]]) -> None:
    logits = np.array(rows, dtype=np.float32)
    for logit, score in zip(raw_logits(logits).tolist(), logits_to_scores(logits).tolist(), strict=True):
        assert sigmoid(logit) == pytest.approx(score, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("mode", ["truncate", "window"])
def test_engine_reports_logits_only_when_asked(mode: str) -> None:
    engine = CrossEncoder.load(fixture_model("marker"), EngineOptions(max_length=32))
    passages = ["plain words " * 30 + "zeppelin", "plain", "zeppelin"]
    plain = engine.score("q", passages, long_documents=mode)  # type: ignore[arg-type]
    assert plain.logits is None
    report = engine.score("q", passages, long_documents=mode, with_logits=True)  # type: ignore[arg-type]
    assert report.scores == plain.scores
    assert report.logits is not None
    expected_first = 6.0 if mode == "window" else -6.0  # the marker is past the first 32 tokens
    assert report.logits == [expected_first, -6.0, 6.0]
    assert [sigmoid(logit) for logit in report.logits] == report.scores  # type: ignore[arg-type]
