"""The native contract: parsing with limits, error messages that point at the field, the ranked response."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.errors import InvalidRequest, PayloadTooLarge, RerankerError
from reranker.schemas import (
    Limits,
    RerankRequest,
    build_rerank_response,
    decode_json,
    parse_rerank_request,
)

LIMITS = Limits(max_passages=10, max_passage_chars=50, max_query_chars=40, max_total_chars=400)


def parse(payload: object, limits: Limits = LIMITS) -> RerankRequest:
    return parse_rerank_request(payload, limits)


def test_passages_may_be_objects_or_bare_strings() -> None:
    request = parse(
        {
            "query": "llm",
            "passages": [
                {"id": "a1", "text": "vLLM", "meta": {"k": [1]}},
                "bare",
                {"text": "no id", "meta": None},
            ],
            "top_k": 2,
            "return_text": False,
            "correlation_id": "run-1",
        }
    )
    first, bare, no_id = request.passages
    assert (first.index, first.id, first.text, first.meta, first.has_meta) == (
        0,
        "a1",
        "vLLM",
        {"k": [1]},
        True,
    )
    assert (bare.index, bare.id, bare.text, bare.has_meta) == (1, 1, "bare", False)
    assert (no_id.id, no_id.has_meta, no_id.meta) == (2, True, None)
    assert (request.top_k, request.return_text, request.correlation_id) == (2, False, "run-1")


def test_defaults() -> None:
    request = parse({"query": "q", "passages": []})
    assert (request.top_k, request.return_text, request.passages) == (None, True, ())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "request must be a JSON object, got a list"),
        ({"passages": []}, "query is required"),
        ({"query": 3, "passages": []}, "query must be a string, got a number"),
        ({"query": " \n", "passages": []}, "query must not be empty"),
        ({"query": "q"}, "passages is required"),
        ({"query": "q", "passages": "text"}, "passages must be a list, got a string"),
        (
            {"query": "q", "passages": [1]},
            "passages[0] must be a string or an object with text, got a number",
        ),
        ({"query": "q", "passages": ["a", "b", "c", {"text": 7}]}, "passages[3].text must be a string"),
        ({"query": "q", "passages": [{"id": 1}]}, "passages[0].text is required"),
        (
            {"query": "q", "passages": [{"text": "t", "id": {"a": 1}}]},
            "passages[0].id must be a string, number",
        ),
        ({"query": "q", "passages": [{"text": "t", "score": 1}]}, "passages[0] has unknown field 'score'"),
        ({"query": "q", "passages": [], "top_k": 0}, "top_k must be a positive integer, got 0"),
        ({"query": "q", "passages": [], "top_k": -2}, "top_k must be a positive integer, got -2"),
        ({"query": "q", "passages": [], "top_k": 1.5}, "top_k must be a positive integer, got 1.5"),
        ({"query": "q", "passages": [], "top_k": True}, "top_k must be a positive integer, got a boolean"),
        ({"query": "q", "passages": [], "top_k": "3"}, "top_k must be a positive integer, got a string"),
        ({"query": "q", "passages": [], "return_text": "yes"}, "return_text must be true or false"),
        ({"query": "q", "passages": [], "correlation_id": 5}, "correlation_id must be a string"),
        ({"query": "q", "passages": [], "top_n": 3}, "unknown field 'top_n'"),
    ],
)
def test_invalid_requests_name_the_field(payload: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(payload)
    assert message in raised.value.public_message


def test_error_messages_never_echo_passage_or_query_text() -> None:
    secret = "confidential-passage-text"
    for payload in (
        {"query": secret, "passages": [{"text": secret, "id": [secret]}]},
        {"query": secret, "passages": [secret, {"text": None}]},
        {"query": [secret], "passages": []},
        {"query": "q", "passages": [], "top_k": secret},
    ):
        with pytest.raises(RerankerError) as raised:
            parse(payload)
        assert secret not in raised.value.public_message


def test_limits_answer_413() -> None:
    with pytest.raises(PayloadTooLarge, match="11 entries; the limit is 10"):
        parse({"query": "q", "passages": ["p"] * 11})
    with pytest.raises(PayloadTooLarge, match="query has 41 characters; the limit is 40"):
        parse({"query": "q" * 41, "passages": []})
    with pytest.raises(PayloadTooLarge, match=r"exceed 400 characters in total \(reached at passages\[7\]\)"):
        parse({"query": "q", "passages": ["x" * 50] * 9})


def test_long_passages_are_pre_truncated_and_counted() -> None:
    request = parse({"query": "q", "passages": ["x" * 120, "short", {"text": "y" * 51}]})
    assert [len(text) for text in request.scored_texts] == [50, 5, 50]
    assert request.passages[0].text == "x" * 120  # returned untouched
    assert request.pre_truncated == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"query": ', "not valid JSON"),
        ('{"top_k": NaN}', "^top_k is NaN, which is not a JSON number"),
        ("[Infinity]", r"^\[0\] is Infinity, which is not a JSON number"),
        (
            '{"passages": [{"meta": {"a b": [1, -1e309]}}]}',
            r"^passages\[0\].meta\['a b'\]\[1\] is a number beyond",
        ),
        ('{"top_k": ' + "9" * 4301 + "}", "^top_k is an integer of 4301 digits"),
        ("-" + "1" * 5000, "^the request is an integer of 5000 digits"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_decode_json_rejects_what_json_does_not_allow(raw: str | bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_json(raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**4300) + 1, 10**4300 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(value=json_values)
def test_decode_json_keeps_every_number_python_can_write_back(value: Any) -> None:
    # Every finite float and every integer of at most 4300 digits decodes to itself and encodes again.
    assert decode_json(json.dumps(value)) == value
    json.dumps(decode_json(json.dumps(value)), allow_nan=False)


# --- the response --------------------------------------------------------------------------------------


def request_of(count: int, **fields: Any) -> RerankRequest:
    passages = [{"id": f"p{i}", "text": f"text {i}"} for i in range(count)]
    passages[0]["meta"] = {"source": "s"}
    return parse({"query": "q", "passages": passages, **fields}, Limits())


def test_results_are_sorted_ties_keep_input_order_and_cut_to_top_k() -> None:
    response = build_rerank_response(
        request_of(5, top_k=4), [0.2, 0.9, 0.2, 0.5, 0.9], model="m", tokens=40, truncated=1
    )
    assert [result["index"] for result in response["results"]] == [1, 4, 3, 0]
    assert response["usage"] == {"passages": 5, "tokens": 40, "truncated": 1}
    assert response["results"][3]["meta"] == {"source": "s"}
    assert "meta" not in response["results"][0]


def test_scores_are_plain_floats_even_from_numpy() -> None:
    scores = list(np.array([0.1, 0.7], dtype=np.float32))
    response = build_rerank_response(request_of(2), scores, model="m", tokens=0, truncated=0)
    assert all(type(result["score"]) is float for result in response["results"])
    json.dumps(response, allow_nan=False)


def test_unscored_passages_follow_in_input_order_unranked() -> None:
    response = build_rerank_response(
        request_of(5), [None, 0.3, None, 0.8, None], model="m", tokens=0, truncated=0
    )
    results = response["results"]
    assert [(r["index"], r["score"], r.get("reranked")) for r in results] == [
        (3, 0.8, None),
        (1, 0.3, None),
        (0, None, False),
        (2, None, False),
        (4, None, False),
    ]


def test_return_text_false_and_empty_passages() -> None:
    response = build_rerank_response(
        request_of(2, return_text=False), [0.1, 0.2], model="m", tokens=0, truncated=0
    )
    assert all("text" not in result for result in response["results"])
    empty = parse({"query": "q", "passages": []})
    assert build_rerank_response(empty, [], model="m", tokens=0, truncated=0)["results"] == []


# --- properties ----------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Near-valid requests reach the deeper checks more often than arbitrary JSON does.
request_like = st.fixed_dictionaries(
    {},
    optional={
        "query": json_values | st.text(max_size=50),
        "passages": st.lists(
            st.text(max_size=60)
            | st.fixed_dictionaries(
                {},
                optional={"id": json_values, "text": json_values | st.text(max_size=60), "meta": json_values},
            )
            | json_values,
            max_size=12,
        )
        | json_values,
        "top_k": json_values | st.integers(-3, 20),
        "return_text": json_values,
        "correlation_id": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(payload=json_values | request_like)
def test_any_json_is_parsed_or_rejected_with_a_documented_4xx(payload: object) -> None:
    try:
        request = parse(payload)
    except RerankerError as exc:
        assert type(exc) in (InvalidRequest, PayloadTooLarge)
        assert 400 <= exc.http_status < 500
        assert exc.public_message
    else:
        assert request.query.strip()
        assert len(request.passages) <= LIMITS.max_passages
        assert all(len(text) <= LIMITS.max_passage_chars for text in request.scored_texts)


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=200) | st.binary(max_size=200))
def test_any_body_text_decodes_or_is_an_invalid_request(raw: str | bytes) -> None:
    try:
        payload = decode_json(raw)
    except InvalidRequest:
        return
    try:
        parse(payload)
    except RerankerError as exc:
        assert 400 <= exc.http_status < 500


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.none() | st.floats(0, 1), min_size=1, max_size=15),
    top_k=st.none() | st.integers(1, 20),
)
def test_response_is_a_ranking_of_the_request(scores: list[float | None], top_k: int | None) -> None:
    request = request_of(len(scores), top_k=top_k)
    results = build_rerank_response(request, scores, model="m", tokens=0, truncated=0)["results"]
    assert len(results) == min(len(scores), top_k or len(scores))
    assert len({result["index"] for result in results}) == len(results)
    ranked = [result["score"] for result in results if result["score"] is not None]
    assert ranked == sorted(ranked, reverse=True)
    first_unranked = next((i for i, r in enumerate(results) if r["score"] is None), len(results))
    assert all(result["score"] is None for result in results[first_unranked:])
