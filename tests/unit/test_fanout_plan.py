"""Fan-out planning and merging (fanout.py) and how a shard invoke's outcome is classified (lambda_invoker.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reranker.config import Settings
from reranker.engine import ScoreReport
from reranker.fanout import ShardScores, TokenCost, from_worker, merge, plan_shards, shard_count
from reranker.lambda_invoker import LambdaInvoker, region_of
from tests.lambda_invoke_api import THROTTLED, InvokeApiError, invoke_api
from tests.loopback import serving

ARN = "arn:aws:lambda:us-east-1:123456789012:function:reranker-unit:live"


@given(st.lists(st.integers(min_value=1, max_value=512), max_size=60), st.integers(min_value=1, max_value=12))
def test_a_plan_covers_every_passage_once_in_input_order_within_each_shard(
    costs: list[int], shards: int
) -> None:
    plan = plan_shards(costs, shards)
    assert sorted(index for shard in plan for index in shard) == list(range(len(costs)))
    assert all(shard == sorted(shard) and shard for shard in plan)
    assert len(plan) == min(shards, len(costs)) or not costs
    loads = [sum(costs[index] for index in shard) for shard in plan]
    assert loads == sorted(loads, reverse=True)  # the coordinator's own shard is the heaviest
    if loads:
        # largest-first greedy: no shard exceeds the lightest by more than one passage's cost
        assert loads[0] - loads[-1] <= max(costs)


def test_shard_count_follows_the_estimate_up_to_the_workers() -> None:
    settings = Settings(fanout_max_workers=4, fanout_target_ms=1000, fanout_token_cost_us=100.0)
    assert shard_count(10_000, settings, passages=50) == 1  # 1000 ms: at the target, not above
    assert shard_count(10_001, settings, passages=50) == 2
    assert shard_count(30_000, settings, passages=50) == 3
    assert shard_count(1_000_000, settings, passages=50) == 5  # 1 + FANOUT_MAX_WORKERS
    assert shard_count(1_000_000, settings, passages=2) == 2  # never more shards than passages
    assert shard_count(1_000_000, dataclasses.replace(settings, fanout_max_workers=0), passages=50) == 1


def test_shard_count_uses_the_measured_cost_when_given() -> None:
    settings = Settings(fanout_max_workers=4, fanout_target_ms=1000, fanout_token_cost_us=100.0)
    assert shard_count(10_001, settings, passages=50, us_per_token=50.0) == 1  # 500 ms at the measured cost
    assert shard_count(10_001, settings, passages=50, us_per_token=300.0) == 4


def _report(tokens: int, seconds: float) -> ScoreReport:
    return ScoreReport(scores=[0.5], tokens=tokens, inference_seconds=seconds)


def test_token_cost_answers_the_prior_until_enough_tokens_are_measured_then_the_measured_cost() -> None:
    cost = TokenCost(prior_us=100.0)
    cost.observe(_report(TokenCost.MIN_TOKENS - 1, (TokenCost.MIN_TOKENS - 1) * 250e-6))  # too few tokens yet
    assert not cost.measured and cost.us_per_token() == 100.0
    cost.observe(_report(1, 0.000_25))
    assert cost.measured and cost.us_per_token() == pytest.approx(250.0)
    cost.observe(_report(0, 1.0))  # a request of cache hits only teaches nothing
    cost.observe(_report(500, 0.0))
    assert cost.us_per_token() == pytest.approx(250.0)


def test_token_cost_pinned_never_learns() -> None:
    cost = TokenCost(prior_us=100.0, learn=False)
    cost.observe(_report(100_000, 100.0))
    assert not cost.measured and cost.us_per_token() == 100.0


def test_token_cost_follows_recent_requests_most() -> None:
    cost = TokenCost(prior_us=100.0)
    for _ in range(40):
        cost.observe(_report(4096, 4096 * 300e-6))  # a slow start (cold caches, a noisy neighbour)
    for _ in range(10 * TokenCost.HALF_LIFE):  # ten half-lives: the slow start weighs about 0.1 %
        cost.observe(_report(4096, 4096 * 100e-6))
    assert cost.us_per_token() == pytest.approx(100.0, rel=0.01)


def test_merge_puts_every_shard_back_in_input_order_and_sums_the_counts() -> None:
    shards = [
        ShardScores([0, 3], [0.5, None], tokens=10, truncated=1, windows=2, hits=1),
        ShardScores([1, 2], [0.25, 0.75], tokens=7, windows=2, source="worker"),
    ]
    merged = merge(shards, 4)
    assert merged.report.scores == [0.5, 0.25, 0.75, None]
    assert (merged.report.tokens, merged.report.truncated, merged.report.windows, merged.hits) == (
        17,
        1,
        4,
        1,
    )


def test_a_worker_answer_is_read_back_by_index_and_a_partial_one_refused() -> None:
    answer: dict[str, Any] = {
        "results": [
            {"index": 1, "id": None, "score": 0.9},
            {"index": 0, "id": None, "score": None, "reranked": False},
        ],
        "usage": {"passages": 2, "tokens": 12, "truncated": 0, "windows": 2},
    }
    shard = from_worker([4, 7], answer, 0.1)
    assert shard is not None
    assert (shard.indices, shard.scores, shard.tokens, shard.hits) == ([4, 7], [None, 0.9], 12, 0)
    assert from_worker([4, 7, 9], answer, 0.1) is None  # top_k-cut or foreign answers are not merged
    assert from_worker([4, 7], {"error": {"type": "InvalidRequest"}}, 0.1) is None


def test_region_comes_from_the_invoked_arn() -> None:
    assert region_of(ARN) == "us-east-1"
    with pytest.raises(ValueError, match="not a Lambda function ARN"):
        region_of("arn:aws:s3:::bucket")


def throttled(event: Any, context: Any) -> Any:
    raise InvokeApiError(*THROTTLED)


def failing(event: Any, context: Any) -> Any:
    raise RuntimeError("boom")


def echo(event: Any, context: Any) -> Any:
    return {"echo": event, "arn": context.invoked_function_arn}


@pytest.mark.parametrize(
    ("handler", "failure", "detail"),
    [
        (throttled, "throttled", "TooManyRequestsException"),
        (failing, "error", "RuntimeError"),
        (None, "error", "ResourceNotFoundException"),
    ],
)
def test_invoke_outcomes_are_classified(
    monkeypatch: pytest.MonkeyPatch, handler: Any, failure: str, detail: str
) -> None:
    functions = {ARN: handler} if handler is not None else {}
    with serving(invoke_api(functions)) as address:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://{address}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        result = LambdaInvoker(max_connections=2, connect_timeout_seconds=1.0).invoke(ARN, {"q": 1})
    assert (result.answer, result.failure, result.detail) == (None, failure, detail)


def test_an_answer_comes_back_from_the_qualified_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(invoke_api({ARN: echo})) as address:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://{address}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        invoker = LambdaInvoker(max_connections=2, connect_timeout_seconds=1.0)
        result = invoker.invoke(ARN, {"query": "q"})
        assert invoker.client(ARN) is invoker.client(ARN)  # one client per region, made once
    assert result.failure is None
    assert result.answer == {"echo": {"query": "q"}, "arn": ARN}
