"""How tools.evaluate reads the service's answers and finds its routes and regions."""

from __future__ import annotations

import pytest

from tools.evaluate.targets import (
    cannot_sign,
    complete_order,
    is_local_host,
    order_from_cohere,
    order_from_native,
    region_from_host,
    route_url,
)


def test_native_answer_order_and_fallback() -> None:
    answer = {"results": [{"index": 2, "score": 0.9}, {"index": 0, "score": 0.1}]}
    assert order_from_native(answer, 3) == ([2, 0, 1], False)  # top_k-style cuts keep the rest in order
    fallback = {
        "results": [
            {"index": 1, "score": 0.7},
            {"index": 0, "score": None, "reranked": False},
            {"index": 2, "score": None, "reranked": False},
        ]
    }
    assert order_from_native(fallback, 3) == ([1, 0, 2], True)


def test_cohere_answer_order_and_fallback() -> None:
    answer = {
        "id": "x",
        "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}],
    }
    assert order_from_cohere(answer, 2) == ([1, 0], False)
    answer["meta"] = {"warnings": ["1 documents were not scored before the deadline"]}
    assert order_from_cohere(answer, 2) == ([1, 0], True)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"results": "no"},
        {"results": [{"score": 1.0}]},
        {"results": [{"index": 3}]},
        {"results": [{"index": 0}, {"index": 0}]},
        {"results": [{"index": -1}]},
    ],
)
def test_malformed_answers_are_errors(answer: object) -> None:
    with pytest.raises(ValueError):
        order_from_native(answer, 2)
    with pytest.raises(ValueError):
        order_from_cohere(answer, 2)


def test_complete_order() -> None:
    assert complete_order([], 3) == [0, 1, 2]
    assert complete_order([2], 3) == [2, 0, 1]


@pytest.mark.parametrize(
    ("base", "route", "url"),
    [
        ("https://abc.execute-api.eu-west-1.amazonaws.com/", "/rerank", "https://abc.execute-api.eu-west-1.amazonaws.com/rerank"),
        ("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "/v2/rerank", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/v2/rerank"),
        ("http://127.0.0.1:9000/rerank", "/rerank", "http://127.0.0.1:9000/rerank"),
    ],
)  # fmt: skip
def test_route_url(base: str, route: str, url: str) -> None:
    assert route_url(base, route) == url


def test_region_from_host() -> None:
    assert region_from_host("abc.execute-api.eu-west-1.amazonaws.com") == "eu-west-1"
    assert region_from_host("xyz.lambda-url.ap-south-1.on.aws") == "ap-south-1"
    assert region_from_host("127.0.0.1") is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST", "api.localhost"])
def test_loopback_hosts_are_local(host: str) -> None:
    assert is_local_host(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.2", "abc.execute-api.eu-west-1.amazonaws.com", ""])
def test_other_hosts_are_not_local(host: str) -> None:
    assert not is_local_host(host)


def test_signing_failures_name_unsigned() -> None:
    local = cannot_sign("127.0.0.1", "credentials", "configure them")
    remote = cannot_sign("abc.execute-api.eu-west-1.amazonaws.com", "region", "pass --region")
    assert "127.0.0.1" in local and "pass --unsigned" in local and "./dev serve" in local
    assert (
        remote == "no AWS region for SigV4 signing: pass --region, or --unsigned for an endpoint without auth"
    )
