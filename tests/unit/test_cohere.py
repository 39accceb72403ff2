"""Cohere v1 / v2 request parsing into native requests, token budgets, and Cohere-shaped answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.cohere import (
    apply_token_budgets,
    build_cohere_response,
    parse_cohere_request,
    search_units,
)
from reranker.engine import CrossEncoder, EngineOptions
from reranker.errors import InvalidRequest, PayloadTooLarge, RerankerError
from reranker.schemas import Limits, build_rerank_response
from reranker.token_budget import DocumentTrimmer
from tests.models import fixture_model

LIMITS = Limits()


@pytest.fixture(scope="module")
def trimmer() -> DocumentTrimmer:
    return DocumentTrimmer.from_engine(
        CrossEncoder.load(fixture_model("int8"), EngineOptions(window_overlap_tokens=64))
    )


# --- parsing ---------------------------------------------------------------------------------------


def test_v2_request_maps_to_a_native_request() -> None:
    request = parse_cohere_request(
        {
            "model": "rerank-v3.5",
            "query": "q",
            "documents": ["a", "b"],
            "top_n": 1,
            "max_tokens_per_doc": 300,
        },
        2,
        LIMITS,
    )
    assert request.native.query == "q"
    assert request.native.scored_texts == ["a", "b"]
    assert request.native.top_k == 1
    assert request.native.return_text is False
    assert request.max_tokens_per_doc == 300
    assert request.model == "rerank-v3.5"
    assert request.long_documents is None


def test_v1_objects_use_text_or_rank_fields() -> None:
    documents = [{"text": "plain", "id": 7}, {"title": "T", "body": "B", "year": 2024}]
    plain = parse_cohere_request({"query": "q", "documents": documents[:1]}, 1, LIMITS)
    assert plain.native.scored_texts == ["plain"]
    fields = parse_cohere_request(
        {"query": "q", "documents": documents[1:], "rank_fields": ["title", "year", "missing"]}, 1, LIMITS
    )
    assert fields.native.scored_texts == ["title: T\nyear: 2024"]


def test_v1_max_chunks_per_doc_selects_window_mode() -> None:
    request = parse_cohere_request({"query": "q", "documents": ["a"], "max_chunks_per_doc": 3}, 1, LIMITS)
    assert request.long_documents == "window"
    assert request.max_chunks_per_doc == 3


def test_nulls_and_unknown_fields_are_ignored_as_newer_sdks_send_them() -> None:
    request = parse_cohere_request(
        {
            "model": "m",
            "query": "q",
            "documents": ["a"],
            "top_n": None,
            "max_tokens_per_doc": None,
            "priority": 0,
            "brand_new_option": True,
        },
        2,
        LIMITS,
    )
    assert request.native.top_k is None
    assert request.ignored_fields == ("brand_new_option",)


@pytest.mark.parametrize(
    ("payload", "version", "message"),
    [
        ([], 2, "JSON object"),
        ({"documents": ["a"]}, 2, "query is required"),
        ({"query": "q"}, 2, "documents is required"),
        ({"query": "q", "documents": "a"}, 2, "documents must be a list"),
        ({"query": "", "documents": ["a"]}, 2, "query must not be empty"),
        ({"query": 3, "documents": ["a"]}, 2, "query must be a string"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 2, "top_n must be a positive integer"),
        ({"query": "q", "documents": ["a"], "top_n": "3"}, 2, "top_n"),
        ({"query": "q", "documents": [3]}, 1, r"documents\[0\] must be a string or an object"),
        ({"query": "q", "documents": [{"title": "t"}]}, 1, "no string 'text' field"),
        ({"query": "q", "documents": [{"t": 1}], "rank_fields": ["x"]}, 1, "none of the rank_fields"),
        ({"query": "q", "documents": ["a"], "rank_fields": "title"}, 1, "rank_fields must be"),
        ({"query": "q", "documents": ["a"], "return_documents": "yes"}, 1, "return_documents"),
        ({"query": "q", "documents": ["a"], "max_chunks_per_doc": 0}, 1, "max_chunks_per_doc"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": -5}, 2, "max_tokens_per_doc"),
        ({"query": "q", "documents": ["a"], "model": 5}, 2, "model must be a string"),
    ],
)
def test_invalid_requests_are_400_in_cohere_words(payload: object, version: int, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as raised:
        parse_cohere_request(payload, version, LIMITS)  # type: ignore[arg-type]
    assert "passages" not in raised.value.public_message
    assert "top_k" not in raised.value.public_message


def test_limits_apply_and_speak_of_documents() -> None:
    with pytest.raises(PayloadTooLarge, match="documents has 3 entries; the limit is 2"):
        parse_cohere_request({"query": "q", "documents": ["a", "b", "c"]}, 2, Limits(max_passages=2))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
cohere_keys = st.sampled_from(
    [
        "model",
        "query",
        "documents",
        "top_n",
        "rank_fields",
        "return_documents",
        "max_chunks_per_doc",
        "max_tokens_per_doc",
        "other",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(cohere_keys, json_values, max_size=7), st.sampled_from([1, 2]))
def test_any_json_body_is_accepted_or_a_4xx_never_a_crash(payload: dict[str, object], version: int) -> None:
    try:
        parse_cohere_request(payload, version, LIMITS)  # type: ignore[arg-type]
    except RerankerError as exc:
        assert 400 <= exc.http_status < 500


# --- token budgets ---------------------------------------------------------------------------------


def test_trim_cuts_at_a_word_boundary_within_the_budget(trimmer: DocumentTrimmer) -> None:
    text = " ".join(f"word{index} airship" for index in range(200))
    (cut,) = trimmer.trim([text], 50)
    assert text.startswith(cut)
    assert 40 <= trimmer_token_count(trimmer, cut) <= 50
    assert trimmer.trim(["short text"], 50) == ["short text"]


def trimmer_token_count(trimmer: DocumentTrimmer, text: str) -> int:
    return len(trimmer._tokenizer.encode(text, add_special_tokens=False).ids)


def test_max_tokens_per_doc_pre_truncates_and_is_counted(trimmer: DocumentTrimmer) -> None:
    long_text = "airship " * 400
    request = parse_cohere_request(
        {"model": "m", "query": "q", "documents": [long_text, "short"], "max_tokens_per_doc": 100}, 2, LIMITS
    )
    native = apply_token_budgets(request, trimmer, window_max_per_passage=8)
    assert trimmer_token_count(trimmer, native.passages[0].scored_text) <= 100
    assert native.passages[0].text == long_text  # what the caller sent is kept for return_documents
    assert native.passages[1].scored_text == "short"
    assert native.pre_truncated == 1


def test_max_chunks_per_doc_bounds_the_windows_the_engine_scores() -> None:
    # Given a model whose score is ~1 iff it sees "zeppelin", and a marker at token 1200: past the two first
    # windows (tokens 0-951 beside a one-token query), inside the third ("filler" is two tokens)
    engine = CrossEncoder.load(fixture_model("marker"), EngineOptions(window_max_per_passage=8))
    trimmer = DocumentTrimmer.from_engine(engine)
    words = ["filler"] * 3000
    words[600] = "zeppelin"
    document = " ".join(words)

    def windowed(chunks: int) -> tuple[float | None, int]:
        request = parse_cohere_request(
            {"query": "q", "documents": [document], "max_chunks_per_doc": chunks}, 1, LIMITS
        )
        native = apply_token_budgets(request, trimmer, window_max_per_passage=8)
        report = engine.score("q", native.scored_texts, long_documents="window")
        return report.scores[0], report.windows

    # Then two windows miss it, three find it, and the engine ran exactly that many windows
    two, three = windowed(2), windowed(3)
    assert two[0] is not None and two[0] < 0.01 and two[1] == 2
    assert three[0] is not None and three[0] > 0.99 and three[1] == 3


# --- answers ---------------------------------------------------------------------------------------


def native_answer(
    request_payload: dict[str, object], version: int, scores: list[float | None]
) -> dict[str, object]:
    request = parse_cohere_request(request_payload, version, LIMITS)  # type: ignore[arg-type]
    native = build_rerank_response(request.native, scores, model="m", tokens=0, truncated=0)
    return build_cohere_response(request, native, "resp-1")


def test_v2_answer_is_sorted_descending_and_cut_to_top_n() -> None:
    answer = native_answer(
        {"model": "m", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}, 2, [0.1, 0.9, 0.5]
    )
    assert answer == {
        "id": "resp-1",
        "results": [{"index": 1, "relevance_score": 0.9}, {"index": 2, "relevance_score": 0.5}],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }
    json.dumps(answer, allow_nan=False)


def test_v1_answer_returns_documents_as_sent_when_asked() -> None:
    documents = ["plain", {"text": "object", "url": "u"}]
    answer = native_answer({"query": "q", "documents": documents, "return_documents": True}, 1, [0.2, 0.7])
    assert answer["results"] == [
        {"index": 1, "relevance_score": 0.7, "document": {"text": "object", "url": "u"}},
        {"index": 0, "relevance_score": 0.2, "document": {"text": "plain"}},
    ]
    assert answer["meta"]["api_version"] == {"version": "1"}  # type: ignore[index]


def test_unscored_documents_come_last_with_score_zero_and_a_warning() -> None:
    answer = native_answer({"model": "m", "query": "q", "documents": ["a", "b", "c"]}, 2, [None, 0.3, None])
    assert [result["index"] for result in answer["results"]] == [1, 0, 2]  # type: ignore[union-attr]
    assert [result["relevance_score"] for result in answer["results"]] == [0.3, 0.0, 0.0]  # type: ignore[union-attr]
    assert "2 documents were not scored" in answer["meta"]["warnings"][0]  # type: ignore[index]


def test_search_units_follow_cohere_billing() -> None:
    assert [search_units(count) for count in (0, 1, 100, 101, 250)] == [1, 1, 1, 2, 3]
