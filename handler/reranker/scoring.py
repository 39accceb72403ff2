"""The scoring policy: the warm cache, the invocation deadline and long-document windows around the engine.

``Scorer`` is built once per model; ``CallScoring`` binds it to one invocation's deadline and tally, which
is what a dialect sees (dialect.Scoring). Time is read through the clock the Scorer is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reranker import schemas
from reranker.config import LongDocuments, Settings
from reranker.engine import CrossEncoder, ScoreReport, WindowsUnsupported
from reranker.errors import DeadlineExceeded, ModeNotApplicable
from reranker.observability import RerankTally, logger, tracing
from reranker.score_cache import CachedScoreReport, ScoreCache, score_with_cache
from reranker.token_budget import DocumentTrimmer

type Clock = Callable[[], float]
type StopCheck = Callable[[], bool]


class Splitter(Protocol):
    """Fan-out for one invocation (fanout.CallFanOut): a big request's scores from shards, or None."""

    def split(
        self,
        scorer: Scorer,
        request: schemas.RerankRequest,
        mode: LongDocuments,
        should_stop: StopCheck | None,
    ) -> CachedScoreReport | None: ...

    def scored_here(self, report: ScoreReport) -> None: ...

    def take_usage(self) -> dict[str, Any] | None: ...


class Scorer:
    """One loaded model and the policies around it; ``clock`` is what deadlines are measured with."""

    def __init__(
        self, engine: CrossEncoder, settings: Settings, cache: ScoreCache, clock: Clock = time.monotonic
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.cache = cache
        self.cache_enabled = cache.enabled  # fixed at init (SCORE_CACHE_MB)
        self.clock = clock
        self.limits = schemas.Limits.from_settings(settings)
        self._trimmer: DocumentTrimmer | None = None  # made on the first request with a token budget

    @classmethod
    def from_settings(cls, engine: CrossEncoder, settings: Settings, clock: Clock = time.monotonic) -> Scorer:
        return cls(engine, settings, ScoreCache.from_megabytes(settings.score_cache_mb), clock)

    def deadline(self, context: Any) -> StopCheck | None:
        """True once the invocation is within DEADLINE_MARGIN_MS of its end; None outside Lambda."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        clock = self.clock
        stop_at = clock() + (remaining() - self.settings.deadline_margin_ms) / 1000
        return lambda: clock() >= stop_at

    def trimmer(self) -> DocumentTrimmer:
        """The tokenizer that enforces token budgets, made the first time a request sets one."""
        if self._trimmer is None:
            self._trimmer = DocumentTrimmer.from_engine(self.engine)
        return self._trimmer

    def score(
        self,
        request: schemas.RerankRequest,
        should_stop: StopCheck | None,
        tally: RerankTally,
        *,
        with_logits: bool = False,
        may_fall_back: bool = True,
        splitter: Splitter | None = None,
    ) -> CachedScoreReport:
        """Scores (and raw logits when asked) for one request, with the deadline policy applied and tallied.

        Raw logits bypass the warm cache, which keeps scores only. ``may_fall_back`` False: a deadline that
        leaves passages unscored is DeadlineExceeded whatever the policy (for answers that cannot flag them).
        """
        settings, engine = self.settings, self.engine
        if settings.log_payloads:
            logger.info(
                "request payload (LOG_PAYLOADS)",
                extra={"query": request.query, "passages": request.scored_texts},
            )
        mode = request.long_documents or settings.long_documents
        tracing.annotate("model", engine.name)
        tracing.annotate("passages", len(request.passages))
        with tracing.subsegment("## engine.score"):
            try:
                if with_logits:
                    report = _score_with_logits(engine, request, mode, should_stop)
                    scored = CachedScoreReport(report=report, hits=0, lookup_seconds=0.0)
                elif splitter is not None and (split := splitter.split(self, request, mode, should_stop)):
                    scored = split
                else:
                    scored = score_with_cache(
                        engine,
                        self.cache,
                        request.query,
                        request.scored_texts,
                        long_documents=mode,
                        should_stop=should_stop,
                    )
                    if splitter is not None:
                        splitter.scored_here(scored.report)
            except WindowsUnsupported as exc:
                raise ModeNotApplicable(f'long_documents "{exc.mode}"', engine.name, exc.reason) from exc
        report = scored.report
        unscored = sum(1 for score in report.scores if score is None)
        if unscored:
            if settings.deadline_policy == "error" or not may_fall_back:
                raise DeadlineExceeded(
                    f"{unscored} of {len(request.passages)} passages were not scored before the deadline; "
                    "send fewer passages or raise the function timeout"
                )
            logger.warning(
                "deadline reached: unscored passages returned unranked",
                extra={"unscored": unscored, "passages": len(request.passages), "batch_item": tally.position},
            )
            tally.deadline_fallbacks += 1
        _tally_scored(tally, request, scored, unscored, with_logits)
        return scored


def _tally_scored(
    tally: RerankTally,
    request: schemas.RerankRequest,
    scored: CachedScoreReport,
    unscored: int,
    with_logits: bool,
) -> None:
    report = scored.report
    tally.requests += 1
    tally.passages += len(request.passages)
    tally.tokens += report.tokens
    tally.windows += report.windows
    tally.truncated += report.truncated
    tally.pre_truncated += request.pre_truncated
    tally.unscored += unscored
    tally.cache_hits += scored.hits
    tally.cache_lookups += len(request.passages) if not with_logits else 0
    tally.tokenize_seconds += report.tokenize_seconds
    tally.inference_seconds += report.inference_seconds


def _score_with_logits(
    engine: CrossEncoder,
    request: schemas.RerankRequest,
    mode: LongDocuments,
    should_stop: StopCheck | None,
) -> ScoreReport:
    # Out of time already: skip even the tokenizer (as score_with_cache does).
    if should_stop is not None and should_stop():
        return ScoreReport(scores=[None] * len(request.passages), logits=[None] * len(request.passages))
    return engine.score(
        request.query, request.scored_texts, long_documents=mode, should_stop=should_stop, with_logits=True
    )


@dataclass
class CallScoring:
    """A Scorer bound to one invocation (dialect.Scoring): the deadline it must keep and what it tallied.

    The deadline is an absolute time (now + the context's remaining time - the margin), read on first use.
    """

    scorer: Scorer
    context: Any  # the Lambda context (get_remaining_time_in_millis), or None outside Lambda
    tally: RerankTally
    splitter: Splitter | None = None  # fan-out (FANOUT_MAX_WORKERS); None for a shard's own request
    _should_stop: StopCheck | None = field(default=None, init=False)
    _deadline_read: bool = field(default=False, init=False)

    def stop_check(self) -> StopCheck | None:
        """The check that turns true within DEADLINE_MARGIN_MS of this invocation's end (None outside Lambda)."""
        if not self._deadline_read:
            self._should_stop = self.scorer.deadline(self.context)
            self._deadline_read = True
        return self._should_stop

    @property
    def limits(self) -> schemas.Limits:
        return self.scorer.limits

    @property
    def max_batch_requests(self) -> int:
        return self.scorer.settings.max_batch_requests

    @property
    def window_max_per_passage(self) -> int:
        return self.scorer.settings.window_max_per_passage

    @property
    def model(self) -> str:
        return self.scorer.engine.name

    @property
    def max_length(self) -> int:
        return self.scorer.engine.max_length

    @property
    def request_id(self) -> str | None:
        value = getattr(self.context, "aws_request_id", None)
        return value if isinstance(value, str) else None

    def rank(self, request: schemas.RerankRequest) -> dict[str, Any]:
        scorer = self.scorer
        scored = scorer.score(request, self.stop_check(), self.tally, splitter=self.splitter)
        report = scored.report
        response = schemas.build_rerank_response(
            request,
            report.scores,
            model=scorer.engine.name,
            tokens=report.tokens,
            truncated=report.truncated,
            windows=report.windows,
            cached=scored.hits if scorer.cache_enabled else None,
        )
        fanout = self.splitter.take_usage() if self.splitter is not None else None
        if fanout is not None:
            response["usage"]["fanout"] = fanout  # only when split: answers without fan-out are unchanged
        self.tally.returned += len(response["results"])
        return response

    def score_every_passage(
        self, request: schemas.RerankRequest, *, with_logits: bool
    ) -> tuple[list[float | None], list[float | None] | None]:
        scored = self.scorer.score(
            request,
            self.stop_check(),
            self.tally,
            with_logits=with_logits,
            may_fall_back=False,
            splitter=self.splitter,
        )
        if self.splitter is not None:
            self.splitter.take_usage()  # answers without a usage block (TEI) report the fan-out in metrics only
        return scored.report.scores, scored.report.logits

    def whole_pair_lengths(self, query: str, texts: Sequence[str]) -> list[int]:
        return self.scorer.engine.tokenization.whole_pair_lengths(query, texts)

    def token_budget(self) -> DocumentTrimmer:
        return self.scorer.trimmer()
