"""One evaluation: first stage, one rerank request per query, metrics of both rankings, the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.evaluate import metrics
from tools.evaluate.dataset import Dataset
from tools.evaluate.first_stage import first_stage
from tools.evaluate.targets import Target

DEFAULT_CANDIDATES = 50
DEFAULT_MIN_GAIN = 0.03


@dataclass
class Evaluation:
    """The summary (the --json document) and what the plot and the error report need."""

    summary: dict[str, Any]
    curves: dict[str, dict[str, list[float]]]
    latencies_ms: list[float]
    errors: Counter[str] = field(default_factory=Counter)


def evaluate(
    dataset: Dataset,
    target: Target,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    min_gain: float = DEFAULT_MIN_GAIN,
    max_queries: int | None = None,
    on_query: Callable[[], None] | None = None,
) -> Evaluation:
    """Rerank every evaluated query's candidates with ``target``; a failed request keeps the first-stage order."""
    query_ids = dataset.evaluated_queries[:max_queries]
    baseline = first_stage(dataset, query_ids, candidates)
    reranked: dict[str, list[str]] = {}
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    failures = fallbacks = 0
    for query_id in query_ids:
        docs = baseline[query_id]
        reranked[query_id] = docs
        if docs:
            outcome = target.rerank(dataset.queries[query_id], [dataset.corpus[doc] for doc in docs])
            if outcome.order is None:
                failures += 1
                errors[outcome.error or "unknown error"] += 1
            else:
                reranked[query_id] = [docs[index] for index in outcome.order]
                latencies.append(outcome.latency_ms)
                fallbacks += outcome.fallback
        if on_query is not None:
            on_query()
    summary = summarize(
        dataset.qrels,
        baseline,
        reranked,
        query_ids,
        candidates=candidates,
        min_gain=min_gain,
        latencies_ms=latencies,
        failures=failures,
        fallbacks=fallbacks,
    )
    curves = {
        "baseline": metrics.curves(dataset.qrels, baseline, query_ids),
        "reranked": metrics.curves(dataset.qrels, reranked, query_ids),
    }
    return Evaluation(summary, curves, latencies, errors)


def summarize(
    qrels: metrics.Qrels,
    baseline: metrics.Rankings,
    reranked: metrics.Rankings,
    query_ids: Sequence[str],
    *,
    candidates: int,
    min_gain: float,
    latencies_ms: Sequence[float],
    failures: int,
    fallbacks: int,
) -> dict[str, Any]:
    """The --json document, with exactly its documented keys."""
    before = metrics.per_query(qrels, baseline, query_ids, metrics.METRICS)
    after = metrics.per_query(qrels, reranked, query_ids, metrics.METRICS)
    baseline_means = metrics.means(before, metrics.METRICS)
    reranked_means = metrics.means(after, metrics.METRICS)
    delta = {name: reranked_means[name] - baseline_means[name] for name in metrics.METRICS}
    wins, ties, losses = metrics.wins_ties_losses(before, after)
    return {
        "queries": len(query_ids),
        "candidates": candidates,
        "baseline": baseline_means,
        "reranked": reranked_means,
        "delta": delta,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "p_value": metrics.paired_p_value(before, after),
        "latency_ms": metrics.latency_percentiles(latencies_ms),
        "failures": failures,
        "fallbacks": fallbacks,
        # A small tolerance so that a gain equal to the threshold is not lost to float rounding.
        "worth_it": bool(query_ids) and delta[metrics.VERDICT_METRIC] >= min_gain - metrics.TIE_TOLERANCE,
    }
