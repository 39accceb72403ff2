"""The scoring policy measures the invocation deadline with the clock it is given, from the first reading on."""

from __future__ import annotations

import types

import pytest

from reranker.config import Settings
from reranker.engine import CrossEncoder
from reranker.errors import DeadlineExceeded
from reranker.observability import RerankTally
from reranker.schemas import parse_rerank_request
from reranker.scoring import CallScoring, Scorer
from tests.models import fixture_model


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def engine() -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8"))


def scorer(engine: CrossEncoder, clock: Clock, **environ: str) -> Scorer:
    settings = Settings.from_env({"MODEL_DIR": str(fixture_model("int8")), **environ})
    return Scorer.from_settings(engine, settings, clock)


def context(remaining_ms: int) -> object:
    return types.SimpleNamespace(get_remaining_time_in_millis=lambda: remaining_ms)


def test_the_deadline_is_the_remaining_time_less_the_margin_on_the_given_clock(engine: CrossEncoder) -> None:
    clock = Clock()
    should_stop = scorer(engine, clock, DEADLINE_MARGIN_MS="500").deadline(context(800))
    assert should_stop is not None and not should_stop()
    clock.now += 0.299
    assert not should_stop()
    clock.now += 0.002
    assert should_stop()
    assert scorer(engine, clock).deadline(object()) is None  # outside Lambda: no deadline


def test_a_call_past_its_deadline_ranks_nothing_or_refuses_where_the_answer_cannot_say_so(
    engine: CrossEncoder,
) -> None:
    clock = Clock()
    policy = scorer(engine, clock, DEADLINE_MARGIN_MS="500", DEADLINE_POLICY="fallback")
    request = parse_rerank_request({"query": "q", "passages": ["a", "b"]}, policy.limits)
    late = CallScoring(policy, context(400), RerankTally())  # already inside the margin
    answer = late.rank(request)
    assert [result["score"] for result in answer["results"]] == [None, None]
    assert late.tally.deadline_fallbacks == 1
    with pytest.raises(DeadlineExceeded, match="2 of 2 passages were not scored"):
        CallScoring(policy, context(400), RerankTally()).score_every_passage(request, with_logits=True)
    on_time = CallScoring(policy, context(10_000), RerankTally())
    assert all(result["score"] is not None for result in on_time.rank(request)["results"])
