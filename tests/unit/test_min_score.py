"""min_score: validated like every field, applied after ranking and before top_k, counted in usage.filtered."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reranker.errors import InvalidRequest
from reranker.schemas import Limits, build_rerank_response, parse_rerank_request
from tests.events import load_event, run
from tools.invoke import LocalContext

LIMITS = Limits(max_passages=50, max_passage_chars=50, max_query_chars=40, max_total_chars=4000)
ZEPPELIN = "the zeppelin crossed the sea"  # the marker model scores these high (logit 6), others low (-6)


def request_with(scores: list[float | None], **fields: Any) -> Any:
    passages = [f"passage {index}" for index in range(len(scores))]
    return parse_rerank_request({"query": "q", "passages": passages, **fields}, LIMITS)


def respond(scores: list[float | None], **fields: Any) -> dict[str, Any]:
    request = request_with(scores, **fields)
    return build_rerank_response(request, scores, model="m", tokens=0, truncated=0)


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0])
def test_numbers_from_0_to_1_are_accepted(value: float) -> None:
    assert request_with([], min_score=value).min_score == float(value)


@pytest.mark.parametrize(
    "value",
    [True, False, -0.01, 1.01, 2, math.nan, math.inf, -math.inf, "0.5", [0.5], {"v": 0.5}, 10**400],
)
def test_anything_else_is_an_invalid_request_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest, match="min_score must be a number from 0 to 1"):
        request_with([], min_score=value)


def test_null_means_no_threshold() -> None:
    assert request_with([], min_score=None).min_score is None
    assert "filtered" not in respond([0.1, 0.9], min_score=None)["usage"]


def test_drops_below_then_cuts_to_top_k() -> None:
    # Given four scores, two of them under the threshold
    scores: list[float | None] = [0.3, 0.9, 0.5, 0.8]
    # When min_score 0.5 and top_k 2 apply: rank, drop below 0.5 (0.3), then cut to 2
    body = respond(scores, min_score=0.5, top_k=2)
    # Then the two best survive and only the one below the threshold counts as filtered
    assert [result["index"] for result in body["results"]] == [1, 3]
    assert body["usage"]["filtered"] == 1
    # A threshold equal to a score keeps it
    body = respond(scores, min_score=0.5)
    assert [result["index"] for result in body["results"]] == [1, 3, 2]


def test_top_k_larger_than_what_survives_returns_the_survivors() -> None:
    body = respond([0.1, 0.7, 0.2], min_score=0.6, top_k=3)
    assert [result["index"] for result in body["results"]] == [1]
    assert body["usage"]["filtered"] == 2


def test_unscored_deadline_passages_are_kept_and_flagged() -> None:
    body = respond([0.9, None, 0.1, None], min_score=0.5)
    assert [(result["index"], result.get("reranked", True)) for result in body["results"]] == [
        (0, True),
        (1, False),
        (3, False),
    ]
    assert body["usage"]["filtered"] == 1


@given(
    scores=st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=30),
    min_score=st.floats(0, 1),
    top_k=st.one_of(st.none(), st.integers(1, 40)),
)
def test_answer_is_the_ranked_survivors_cut_to_top_k(
    scores: list[float | None], min_score: float, top_k: int | None
) -> None:
    fields: dict[str, Any] = {"min_score": min_score}
    if top_k is not None:
        fields["top_k"] = top_k
    body = respond(scores, **fields)
    limit = len(scores) if top_k is None else top_k
    survivors = sorted(
        (index for index, score in enumerate(scores) if score is not None and score >= min_score),
        key=lambda index: -scores[index],  # type: ignore[operator]
    )
    unscored = [index for index, score in enumerate(scores) if score is None]
    expected = (survivors[:limit] + unscored)[:limit]
    assert [result["index"] for result in body["results"]] == expected
    assert all(result["score"] is None or result["score"] >= min_score for result in body["results"])
    assert body["usage"]["filtered"] == sum(1 for score in scores if score is not None and score < min_score)


# --- through the handler: direct invokes, HTTP, batch items, BatchInput; Cohere unchanged ----------------


@pytest.fixture
def marker_app(configure: Any) -> ModuleType:
    from tests.models import fixture_model

    return configure(MODEL_DIR=str(fixture_model("marker")))


def test_direct_invoke_drops_the_low_scores(marker_app: ModuleType) -> None:
    outcome = run(
        marker_app,
        {
            "query": "airships",
            "passages": ["a cat", ZEPPELIN, "a dog", ZEPPELIN + " again"],
            "min_score": 0.5,
        },
    )
    assert outcome.status == 200
    assert [result["index"] for result in outcome.body["results"]] == [1, 3]
    assert outcome.body["usage"]["filtered"] == 2


def test_event_file_with_min_score(marker_app: ModuleType) -> None:
    outcome = run(marker_app, load_event("direct-rerank-min-score.json"))
    assert outcome.status == 200
    assert outcome.body["usage"]["filtered"] >= 1
    assert all(result["score"] >= 0.5 for result in outcome.body["results"])


def test_batch_items_and_batch_input_defaults(marker_app: ModuleType) -> None:
    passages = ["a cat", ZEPPELIN]
    answer = run(
        marker_app,
        {
            "requests": [
                {"query": "q", "passages": passages, "min_score": 0.5},
                {"query": "q", "passages": passages},
                {"query": "q", "passages": passages, "min_score": "high"},
            ]
        },
    ).body["responses"]
    assert [len(item.get("results", [])) for item in answer] == [1, 2, 0]
    assert "filtered" not in answer[1]["usage"]
    assert answer[2]["error"]["type"] == "InvalidRequest"
    assert "min_score" in answer[2]["error"]["message"]

    items = run(
        marker_app,
        {
            "Items": [
                {"query": "q", "passages": passages},
                {"query": "q", "passages": passages, "min_score": 0},
            ],
            "BatchInput": {"min_score": 0.5, "return_text": False},
        },
    ).body["responses"]
    assert [len(item["results"]) for item in items] == [1, 2]  # an item's own value beats BatchInput's


def test_bad_min_score_over_http_is_a_400(app: ModuleType) -> None:
    outcome = run(app, load_event("http-api-bad-min-score.json"))
    assert outcome.status == 400
    assert outcome.error_type == "InvalidRequest"
    assert "min_score" in outcome.message


def test_cohere_routes_ignore_min_score(marker_app: ModuleType) -> None:
    from tools.serve import http_api_event

    body = b'{"query": "q", "documents": ["a cat", "the zeppelin"], "min_score": 0.9}'
    event = http_api_event(
        method="POST",
        target="/v2/rerank",
        headers=[("content-type", "application/json")],
        body=body,
        source_ip="127.0.0.1",
    )
    response = marker_app.lambda_handler(event, LocalContext())
    assert response["statusCode"] == 200
    assert '"index":0' in response["body"]  # the low-scoring document is still there
