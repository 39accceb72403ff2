"""RerankerClient with the real botocore signer / Lambda client against the stand-in and the real handler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import botocore.session
import pytest
from conftest import ACCESS_KEY, FUNCTION_NAME, REGION
from standin import StandIn

from lambda_reranker_client import (
    AccessDenied,
    DeadlineExceeded,
    InvalidRequest,
    ModelUnavailable,
    PayloadTooLarge,
    RerankerClient,
    RetryPolicy,
    RouteNotFound,
    ServiceError,
    Throttled,
    TransportError,
)
from lambda_reranker_client.transports import url_target

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, total_seconds=10)
PASSAGES = [
    {
        "id": "ce",
        "text": "A cross-encoder scores the query and the passage together.",
        "meta": {"source": "docs"},
    },
    "Bananas are yellow and rich in potassium.",
    {"id": 7, "text": "Rerankers reorder retrieved passages by relevance to the query."},
]
QUERY = "what does a cross-encoder reranker do?"


def api_client(aws: StandIn, **options: object) -> RerankerClient:
    return RerankerClient.from_url(aws.url, retry=FAST_RETRY, **options)  # type: ignore[arg-type]


def invoke_client(aws: StandIn, name: str = FUNCTION_NAME, **options: object) -> RerankerClient:
    return RerankerClient.from_function(name, REGION, endpoint_url=aws.url, retry=FAST_RETRY, **options)  # type: ignore[arg-type]


CLIENTS: dict[str, Callable[[StandIn], RerankerClient]] = {
    "api-gateway": api_client,
    "function-url": lambda aws: api_client(aws, service="lambda"),
    "invoke-name": invoke_client,
    "invoke-arn": lambda aws: invoke_client(
        aws, f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION_NAME}"
    ),
}


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest, aws: StandIn) -> RerankerClient:
    return CLIENTS[request.param](aws)


def sent(aws: StandIn) -> dict[str, object]:
    """The native request the last call carried (the event itself for Invoke, the body for HTTP)."""
    return json.loads(aws.received[-1].body)


# --- results ---------------------------------------------------------------------------------------


def test_rerank_returns_typed_results_sorted_by_score(client: RerankerClient, aws: StandIn) -> None:
    response = client.rerank(QUERY, PASSAGES, return_text=True)

    assert response.model == "ms-marco-TinyBERT-L-2-v2"
    assert sorted(r.index for r in response.results) == [0, 1, 2]
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(s, float) and 0 <= s <= 1 for s in scores)
    by_index = {r.index: r for r in response.results}
    assert (by_index[0].id, by_index[0].meta, by_index[0].text) == (
        "ce",
        {"source": "docs"},
        PASSAGES[0]["text"],
    )  # type: ignore[index]
    assert (by_index[1].id, by_index[1].meta) == (1, None)
    assert by_index[2].id == 7
    assert response.usage.passages == 3 and response.usage.tokens > 0
    assert all(received.status == 200 and received.signed_by for received in aws.received)


SIGNED_FOR = {
    "api-gateway": ("execute-api", "/rerank"),
    "function-url": ("lambda", "/rerank"),
    "invoke-name": ("lambda", "/2015-03-31/functions/reranker/invocations"),
    "invoke-arn": (
        "lambda",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Areranker/invocations",
    ),
}


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_each_endpoint_is_signed_for_its_service(kind: str, aws: StandIn) -> None:
    CLIENTS[kind](aws).rerank(QUERY, ["a"])

    (received,) = aws.received
    assert received.signed_by is not None
    assert (received.signed_by.access_key, received.signed_by.region) == (ACCESS_KEY, REGION)
    assert (received.signed_by.service, received.path) == SIGNED_FOR[kind]


def test_an_explicit_region_and_service_are_what_is_signed_for(aws: StandIn) -> None:
    RerankerClient.from_url(aws.url, "eu-west-3", service="lambda").rerank(QUERY, ["a"])

    (received,) = aws.received
    assert received.signed_by is not None
    assert (received.signed_by.region, received.signed_by.service) == ("eu-west-3", "lambda")


def test_top_k_and_return_text_are_sent_and_min_score_only_when_given(
    client: RerankerClient, aws: StandIn
) -> None:
    response = client.rerank(QUERY, PASSAGES, top_k=1)

    assert len(response.results) == 1 and response.results[0].text is None
    assert sent(aws) == {"query": QUERY, "passages": PASSAGES, "return_text": False, "top_k": 1}


def test_min_score_drops_results_below_it(aws: StandIn) -> None:
    client = api_client(aws)
    everything = client.rerank(QUERY, PASSAGES)
    threshold = (everything.results[0].score + everything.results[1].score) / 2
    try:
        response = client.rerank(QUERY, PASSAGES, min_score=threshold)
    except InvalidRequest as exc:
        if "min_score" not in exc.message:
            raise
        pytest.skip(f"this handler does not take min_score yet: {exc.message}")

    assert sent(aws)["min_score"] == threshold
    assert [r.index for r in response.results] == [everything.results[0].index]
    assert response.usage.filtered == 2


def test_async_rerank(aws: StandIn) -> None:
    client = api_client(aws)

    async def both() -> list[int]:
        answers = await asyncio.gather(
            client.arerank(QUERY, PASSAGES, top_k=2), client.arerank("bananas", PASSAGES)
        )
        return [len(answer.results) for answer in answers]

    assert asyncio.run(both()) == [2, 3]


# --- errors: the service's types, by name ----------------------------------------------------------


def test_a_bad_request_raises_invalid_request_without_retrying(client: RerankerClient, aws: StandIn) -> None:
    with pytest.raises(InvalidRequest, match="query") as caught:
        client.rerank("", ["a passage"])

    assert caught.value.error_type == "InvalidRequest"
    assert len(aws.received) == 1


def test_too_many_passages_raise_payload_too_large(
    client: RerankerClient, aws: StandIn, handler_env: Callable[..., None]
) -> None:
    handler_env(MAX_PASSAGES="2")

    with pytest.raises(PayloadTooLarge):
        client.rerank(QUERY, PASSAGES)


def test_an_unknown_route_raises_route_not_found(aws: StandIn) -> None:
    with pytest.raises(RouteNotFound) as caught:
        RerankerClient.from_url(f"{aws.url}/v9").rerank(QUERY, ["a"])

    assert caught.value.status == 404
    assert aws.received[-1].path == "/v9/rerank"


@pytest.mark.parametrize("make", [api_client, invoke_client], ids=["api", "invoke"])
def test_a_wrong_secret_is_rejected_by_the_signature_check(
    make: Callable[..., RerankerClient], aws: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")

    with pytest.raises(AccessDenied, match="signature") as caught:
        make(aws).rerank(QUERY, ["a"])

    assert caught.value.status == 403
    assert caught.value.error_type == "InvalidSignatureException"
    assert [received.status for received in aws.received] == [403]


def test_an_unknown_function_is_a_service_error(aws: StandIn) -> None:
    with pytest.raises(ServiceError) as caught:
        invoke_client(aws, "no-such-function").rerank(QUERY, ["a"])

    assert caught.value.error_type == "ResourceNotFoundException"


def test_no_answer_is_a_transport_error(aws: StandIn) -> None:
    closed = RerankerClient.from_url("http://127.0.0.1:9", connect_timeout=1, retry=FAST_RETRY)

    with pytest.raises(TransportError):
        closed.rerank(QUERY, ["a"])


@pytest.mark.parametrize("make", [api_client, invoke_client], ids=["api", "invoke"])
def test_the_read_timeout_applies_and_is_not_retried(
    make: Callable[..., RerankerClient], aws: StandIn
) -> None:
    aws.answer_delay = 0.5

    with pytest.raises(TransportError) as caught:
        make(aws, read_timeout=0.1).rerank(QUERY, ["a"])

    assert "timeout" in caught.value.error_type.lower()
    assert len(aws.received) == 1  # neither our policy nor botocore's retried it


# --- retries: throttling, ModelUnavailable, DeadlineExceeded only ----------------------------------


def test_throttling_is_retried_until_it_passes(client: RerankerClient, aws: StandIn) -> None:
    aws.throttle_next = 2

    response = client.rerank(QUERY, PASSAGES)

    assert len(response.results) == 3
    assert [received.status for received in aws.received] == [429, 429, 200]


def test_throttling_past_the_attempts_raises_throttled(client: RerankerClient, aws: StandIn) -> None:
    aws.throttle_next = 10

    with pytest.raises(Throttled) as caught:
        client.rerank(QUERY, PASSAGES)

    assert caught.value.status == 429
    assert len(aws.received) == FAST_RETRY.max_attempts


def test_model_unavailable_is_retried_then_raised(
    client: RerankerClient, aws: StandIn, handler_env: Callable[..., None], tmp_path: object
) -> None:
    handler_env(MODEL_DIR=f"{tmp_path}/missing-model")

    with pytest.raises(ModelUnavailable) as caught:
        client.rerank(QUERY, PASSAGES)

    assert caught.value.error_type == "ModelUnavailable"
    assert len(aws.received) == FAST_RETRY.max_attempts


def test_deadline_exceeded_is_retried_then_raised(
    client: RerankerClient, aws: StandIn, handler_env: Callable[..., None]
) -> None:
    handler_env(DEADLINE_POLICY="error")
    aws.timeout_ms = 1  # every invocation starts with its time already spent
    try:
        with pytest.raises(DeadlineExceeded, match="deadline"):
            client.rerank(QUERY, PASSAGES)
    finally:
        aws.timeout_ms = 29_000

    assert len(aws.received) == FAST_RETRY.max_attempts


def test_no_retry_starts_past_the_time_budget(aws: StandIn) -> None:
    aws.throttle_next = 10
    client = RerankerClient.from_url(
        aws.url, retry=RetryPolicy(max_attempts=10, base_delay=5, max_delay=5, total_seconds=0.001)
    )

    with pytest.raises(Throttled):
        client.rerank(QUERY, ["a"])

    assert len(aws.received) == 1


def test_retry_delays_grow_with_full_jitter_under_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=2.0)
    for retry_number, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 2.0)]:
        delays = [policy.delay(retry_number) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range


# --- building clients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com",
            ("https://abc123.execute-api.eu-west-1.amazonaws.com/rerank", "execute-api", "eu-west-1"),
        ),
        (
            "https://abc123.execute-api.us-east-2.amazonaws.com/prod/",
            ("https://abc123.execute-api.us-east-2.amazonaws.com/prod/rerank", "execute-api", "us-east-2"),
        ),
        (
            "https://xyz.lambda-url.ap-south-1.on.aws/",
            ("https://xyz.lambda-url.ap-south-1.on.aws/rerank", "lambda", "ap-south-1"),
        ),
        ("https://rerank.example.com/rerank", ("https://rerank.example.com/rerank", "execute-api", None)),
    ],
)
def test_the_url_decides_service_region_and_path(url: str, expected: tuple[str, str, str | None]) -> None:
    target = url_target(url)
    assert (target.url, target.service, target.region) == expected


def test_from_url_takes_the_region_from_the_host_unless_given() -> None:
    session = botocore.session.Session()
    inferred = RerankerClient.from_url("https://abc.execute-api.eu-west-1.amazonaws.com", session=session)
    explicit = RerankerClient.from_url("https://abc.execute-api.eu-west-1.amazonaws.com", "eu-central-1")

    assert inferred.transport.region == "eu-west-1"  # type: ignore[attr-defined]
    assert explicit.transport.region == "eu-central-1"  # type: ignore[attr-defined]


def test_from_function_takes_the_region_from_the_arn() -> None:
    client = RerankerClient.from_function("arn:aws:lambda:sa-east-1:123456789012:function:reranker:live")

    assert client.transport.lambda_client.meta.region_name == "sa-east-1"  # type: ignore[attr-defined]


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        RerankerClient.from_url("ftp://example.com/rerank")
