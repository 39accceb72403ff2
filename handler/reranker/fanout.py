"""Exact fan-out: a big request split into shards of balanced token cost, scored across invocations, merged.

Scores are bit-identical whatever the other passages of a request, so shards scored by other invocations of
this function (its own version or alias) merge into the answer one invocation would give. The coordinator
scores the first shard itself; a shard a worker fails, Lambda throttles or that is not answered within its
slice of the deadline is scored locally while time allows, and otherwise left unscored for the deadline
policy: a worker's failure is never the caller's error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from reranker import schemas
from reranker.config import LongDocuments, Settings
from reranker.engine import ScoreReport
from reranker.lambda_invoker import InvokeResult, LambdaInvoker
from reranker.observability import (
    FANOUT_LOCAL_FALLBACKS,
    FANOUT_SHARDS,
    FANOUT_THROTTLES,
    FANOUT_WORKER_ERRORS,
    logger,
    metrics,
)
from reranker.score_cache import CachedScoreReport, score_with_cache
from reranker.scoring import Scorer

# The direct-invoke field that marks a shard's request: accepted only on direct invokes, never split again.
SHARD_MARKER = "fanout_shard"

type Clock = Callable[[], float]
type StopCheck = Callable[[], bool]
type LocalScore = Callable[[Sequence[str], StopCheck | None], CachedScoreReport]


class TokenCost:
    """This environment's inference time per model token, measured on the requests it scored itself.

    Until it has scored ``MIN_TOKENS`` tokens it answers FANOUT_TOKEN_COST_US (the declared prior); from
    then on the ratio of its recent inference seconds to tokens, each request's weight halving every
    ``HALF_LIFE`` requests, so a changed load or a warmed cache shows within a few requests.
    """

    MIN_TOKENS = 2048
    HALF_LIFE = 8

    def __init__(self, prior_us: float, *, learn: bool = True) -> None:
        self.prior_us = prior_us
        self.learn = learn
        self._seconds = 0.0
        self._tokens = 0.0
        self._seen = 0

    def observe(self, report: ScoreReport) -> None:
        """Count one locally scored report (tokens run and the time the runs took)."""
        if not self.learn or report.tokens <= 0 or report.inference_seconds <= 0:
            return
        keep = 0.5 ** (1 / self.HALF_LIFE)
        self._seconds = self._seconds * keep + report.inference_seconds
        self._tokens = self._tokens * keep + report.tokens
        self._seen += report.tokens

    @property
    def measured(self) -> bool:
        return self._seen >= self.MIN_TOKENS

    def us_per_token(self) -> float:
        return self._seconds / self._tokens * 1e6 if self.measured else self.prior_us


def shard_count(tokens: int, settings: Settings, passages: int, us_per_token: float | None = None) -> int:
    """How many shards the estimated inference time asks for: 1 (no fan-out) up to 1 + FANOUT_MAX_WORKERS.

    ``us_per_token``: the measured cost (TokenCost); FANOUT_TOKEN_COST_US when None.
    """
    cost_us = settings.fanout_token_cost_us if us_per_token is None else us_per_token
    estimate_ms = tokens * cost_us / 1000
    if settings.fanout_max_workers <= 0 or estimate_ms <= settings.fanout_target_ms:
        return 1
    wanted = math.ceil(estimate_ms / settings.fanout_target_ms)
    return max(1, min(wanted, 1 + settings.fanout_max_workers, passages))


def plan_shards(costs: Sequence[int], shards: int) -> list[list[int]]:
    """Passage indices per shard, balanced by token cost (largest first onto the lightest shard).

    Each shard's indices are in input order; no shard is empty; the heaviest shard comes first (the
    coordinator's own, scored while the workers are invoked).
    """
    count = max(1, min(shards, len(costs)))
    loads = [0] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        lightest = min(range(count), key=lambda shard: (loads[shard], shard))
        loads[lightest] += costs[index]
        members[lightest].append(index)
    order = sorted(range(count), key=lambda shard: (-loads[shard], shard))
    return [sorted(members[shard]) for shard in order if members[shard]]


@dataclass
class ShardScores:
    """One shard's scores in its own order (None: unscored) and what scoring them counted."""

    indices: list[int]
    scores: list[float | None]
    tokens: int = 0
    truncated: int = 0
    windows: int = 0
    hits: int = 0
    source: str = "local"  # local, worker, fallback (scored locally after a worker failed)
    seconds: float = 0.0


def from_local(indices: list[int], scored: CachedScoreReport, source: str, seconds: float) -> ShardScores:
    report = scored.report
    return ShardScores(
        indices,
        list(report.scores),
        report.tokens,
        report.truncated,
        report.windows,
        scored.hits,
        source,
        seconds,
    )


def from_worker(indices: list[int], answer: dict[str, Any], seconds: float) -> ShardScores | None:
    """A worker's native answer read back into input order; None if it is not a complete native answer."""
    results, usage = answer.get("results"), answer.get("usage")
    if not isinstance(results, list) or not isinstance(usage, dict) or len(results) != len(indices):
        return None
    scores: list[float | None] = [None] * len(indices)
    for result in results:
        position, score = result.get("index"), result.get("score")
        if not isinstance(position, int) or not 0 <= position < len(indices):
            return None
        scores[position] = float(score) if isinstance(score, (int, float)) else None
    tokens, truncated, windows, cached = (
        usage.get(key, 0) for key in ("tokens", "truncated", "windows", "cached")
    )
    if not all(isinstance(value, int) for value in (tokens, truncated, windows, cached)):
        return None
    return ShardScores(indices, scores, tokens, truncated, windows, cached, source="worker", seconds=seconds)


def merge(shards: Sequence[ShardScores], passages: int) -> CachedScoreReport:
    """Every shard's scores back in input order, their counts summed."""
    scores: list[float | None] = [None] * passages
    for shard in shards:
        for index, score in zip(shard.indices, shard.scores, strict=True):
            scores[index] = score
    report = ScoreReport(
        scores=scores,
        tokens=sum(shard.tokens for shard in shards),
        truncated=sum(shard.truncated for shard in shards),
        windows=sum(shard.windows for shard in shards),
        inference_seconds=sum(shard.seconds for shard in shards if shard.source != "worker"),
    )
    return CachedScoreReport(report=report, hits=sum(shard.hits for shard in shards), lookup_seconds=0.0)


@dataclass
class FanoutSummary:
    """What ``usage.fanout`` reports: the shards, and the compute the workers' invokes held."""

    shards: int
    worker_ms: list[float] = field(default_factory=list)
    worker_errors: int = 0
    throttles: int = 0
    local_fallbacks: int = 0

    def usage(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "workers": len(self.worker_ms),
            "worker_ms": round(sum(self.worker_ms), 1),
            "worker_errors": self.worker_errors,
            "local_fallbacks": self.local_fallbacks,
        }

    def emit(self) -> None:
        metrics.add_metric(name=FANOUT_SHARDS, unit="Count", value=self.shards)
        metrics.add_metric(name=FANOUT_WORKER_ERRORS, unit="Count", value=self.worker_errors)
        metrics.add_metric(name=FANOUT_THROTTLES, unit="Count", value=self.throttles)
        metrics.add_metric(name=FANOUT_LOCAL_FALLBACKS, unit="Count", value=self.local_fallbacks)


@dataclass
class FanoutRequest:
    """One request to split: its texts, the mode, the per-passage token costs and the time it has."""

    query: str
    texts: Sequence[str]
    mode: LongDocuments
    costs: Sequence[int]
    should_stop: StopCheck | None
    stop_at: float  # the clock time scoring must end by (the deadline less its margin)


class FanOut:
    """Split, invoke, score the own shard, wait within each shard's slice, fall back, merge."""

    def __init__(self, settings: Settings, invoker: LambdaInvoker, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.invoker = invoker
        self.clock = clock
        self.token_cost = TokenCost(settings.fanout_token_cost_us, learn=settings.fanout_measure_token_cost)

    def run(
        self, function_arn: str, request: FanoutRequest, plan: list[list[int]], local: LocalScore
    ) -> tuple[CachedScoreReport, FanoutSummary]:
        summary = FanoutSummary(shards=len(plan))
        own, remote = plan[0], plan[1:]
        executor = ThreadPoolExecutor(max_workers=len(remote), thread_name_prefix="fanout")
        try:
            futures = [
                executor.submit(self.invoker.invoke, function_arn, self._payload(request, indices))
                for indices in remote
            ]
            started = time.perf_counter()
            own_scored = local([request.texts[i] for i in own], request.should_stop)
            self.token_cost.observe(own_scored.report)
            shards = [from_local(own, own_scored, "local", time.perf_counter() - started)]
            give_up = self._give_up_at(request, remote)
            for indices, future in zip(remote, futures, strict=True):
                shards.append(
                    self._collect(request, indices, future, give_up=give_up, local=local, summary=summary)
                )
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        summary.emit()
        return merge(shards, len(request.texts)), summary

    def _payload(self, request: FanoutRequest, indices: list[int]) -> dict[str, Any]:
        return {
            "query": request.query,
            "passages": [request.texts[i] for i in indices],
            "return_text": False,
            "long_documents": request.mode,
            SHARD_MARKER: True,
        }

    def _give_up_at(self, request: FanoutRequest, remote: list[list[int]]) -> float:
        """When to stop waiting for workers: what still leaves time to score every remote shard here, or the
        deadline itself when there is not that much time in any case (then what is left is flagged)."""
        tokens = sum(request.costs[i] for indices in remote for i in indices)
        give_up = request.stop_at - tokens * self.token_cost.us_per_token() / 1e6
        return give_up if give_up > self.clock() else request.stop_at

    def _collect(
        self,
        request: FanoutRequest,
        indices: list[int],
        future: Future[InvokeResult],
        *,
        give_up: float,
        local: LocalScore,
        summary: FanoutSummary,
    ) -> ShardScores:
        try:
            result = future.result(timeout=max(0.0, give_up - self.clock()))
        except FutureTimeout:
            result = InvokeResult(None, "timeout", "no answer within the shard's slice of the deadline")
        if result.answer is not None:
            summary.worker_ms.append(result.seconds * 1000)
            shard = from_worker(indices, result.answer, result.seconds)
            if shard is not None:
                return shard
            result = InvokeResult(None, "error", "not a native answer", result.seconds)
        summary.worker_errors += 1
        summary.throttles += result.failure == "throttled"
        logger.warning(
            "fan-out shard failed; scoring it here",
            extra={"failure": result.failure, "detail": result.detail, "shard_passages": len(indices)},
        )
        started = time.perf_counter()
        scored = local([request.texts[i] for i in indices], request.should_stop)
        self.token_cost.observe(scored.report)
        summary.local_fallbacks += 1
        return from_local(indices, scored, "fallback", time.perf_counter() - started)


def pair_costs(scorer: Scorer, query: str, texts: Sequence[str], mode: LongDocuments) -> list[int]:
    """Each passage's model tokens with the query, counted by the model's tokenizer (capped when truncated)."""
    lengths = scorer.engine.tokenization.whole_pair_lengths(query, texts)
    if mode == "window":
        return lengths
    limit = scorer.engine.max_length
    return [min(length, limit) for length in lengths]


class CallFanOut:
    """The fan-out bound to one invocation (scoring.Splitter): its function ARN, its deadline, its usage."""

    def __init__(self, fanout: FanOut, function_arn: str, context: Any) -> None:
        self.fanout = fanout
        self.function_arn = function_arn
        self.context = context
        self._usage: dict[str, Any] | None = None

    def split(
        self,
        scorer: Scorer,
        request: schemas.RerankRequest,
        mode: LongDocuments,
        should_stop: StopCheck | None,
    ) -> CachedScoreReport | None:
        """The merged scores of a request worth splitting, or None to score it here as usual."""
        settings, texts = self.fanout.settings, request.scored_texts
        us_per_token = self.fanout.token_cost.us_per_token()
        if len(texts) < 2:
            return None
        if (
            mode == "truncate"
            and shard_count(len(texts) * scorer.engine.max_length, settings, len(texts), us_per_token) == 1
        ):
            return None  # not even at the token limit for every passage: no need to tokenize twice
        costs = pair_costs(scorer, request.query, texts, mode)
        count = shard_count(sum(costs), settings, len(texts), us_per_token)
        if count == 1:
            return None
        remaining_ms = self.context.get_remaining_time_in_millis() - settings.deadline_margin_ms
        plan = plan_shards(costs, count)
        split = FanoutRequest(
            request.query, texts, mode, costs, should_stop, scorer.clock() + remaining_ms / 1000
        )

        def local(shard_texts: Sequence[str], stop: StopCheck | None) -> CachedScoreReport:
            return score_with_cache(
                scorer.engine, scorer.cache, request.query, shard_texts, long_documents=mode, should_stop=stop
            )

        merged, summary = self.fanout.run(self.function_arn, split, plan, local)
        self._usage = summary.usage()
        return merged

    def scored_here(self, report: ScoreReport) -> None:
        """A request this invocation scored itself, unsplit: its cost per token teaches the estimate."""
        self.fanout.token_cost.observe(report)

    def take_usage(self) -> dict[str, Any] | None:
        """``usage.fanout`` of the request split last, once (None when it was not split)."""
        usage, self._usage = self._usage, None
        return usage


_shared: list[FanOut] = []  # this environment's FanOut: its invoker keeps one botocore client per region


def for_call(settings: Settings, context: Any, clock: Clock = time.monotonic) -> CallFanOut | None:
    """The invocation's fan-out when FANOUT_MAX_WORKERS is on and Lambda says which function this is."""
    function_arn = getattr(context, "invoked_function_arn", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if settings.fanout_max_workers <= 0 or not isinstance(function_arn, str) or remaining is None:
        return None
    if not _shared or _shared[0].settings is not settings:
        invoker = LambdaInvoker(
            max_connections=settings.fanout_max_workers,
            connect_timeout_seconds=settings.fanout_connect_timeout_seconds,
        )
        _shared[:] = [FanOut(settings, invoker, clock)]
    return CallFanOut(_shared[0], function_arn, context)


def reset() -> None:
    """Forget this environment's FanOut and its botocore clients (tests; after a SnapStart restore)."""
    _shared.clear()
