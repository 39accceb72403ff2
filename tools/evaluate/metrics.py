"""Ranking quality by ir-measures (trec_eval's C code via pytrec_eval), the paired test by scipy.

Rankings are handed over as ranks, never as the service's scores: trec_eval breaks score ties by document id,
which would reorder passages that the service (stable sort) and the first stage left in a deliberate order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ir_measures

# The report's metric names and their ir-measures measures (nDCG with trec_eval's linear gains).
METRICS: dict[str, Any] = {
    "ndcg@1": ir_measures.nDCG @ 1,
    "ndcg@3": ir_measures.nDCG @ 3,
    "ndcg@5": ir_measures.nDCG @ 5,
    "ndcg@10": ir_measures.nDCG @ 10,
    "mrr@10": ir_measures.RR @ 10,
    "recall@5": ir_measures.R @ 5,
    "recall@10": ir_measures.R @ 10,
}
CURVE_DEPTHS = tuple(range(1, 11))
WIN_METRIC = "ndcg@10"
VERDICT_METRIC = "ndcg@5"
# Per-query differences below this are ties (float noise between two sums of the same terms).
TIE_TOLERANCE = 1e-9

type Rankings = Mapping[str, Sequence[str]]
type Qrels = Mapping[str, Mapping[str, int]]
type PerQuery = dict[str, dict[str, float]]


def as_run(rankings: Rankings) -> dict[str, dict[str, float]]:
    """Doc ids best first -> a trec run whose scores are strictly decreasing in rank."""
    return {
        query_id: {doc_id: float(len(docs) - rank) for rank, doc_id in enumerate(docs)}
        for query_id, docs in rankings.items()
        if docs
    }


def per_query(
    qrels: Qrels, rankings: Rankings, query_ids: Sequence[str], metrics: Mapping[str, Any]
) -> PerQuery:
    """Every metric for every query of ``query_ids``; a query with nothing retrieved scores 0."""
    names = {measure: name for name, measure in metrics.items()}
    values: PerQuery = {query_id: dict.fromkeys(metrics, 0.0) for query_id in query_ids}
    judged = {query_id: dict(qrels[query_id]) for query_id in query_ids}
    run = as_run({query_id: rankings.get(query_id, ()) for query_id in query_ids})
    for metric in ir_measures.iter_calc(list(metrics.values()), judged, run):
        values[metric.query_id][names[metric.measure]] = float(metric.value)
    return values


def mean(values: PerQuery, name: str) -> float:
    return math.fsum(scores[name] for scores in values.values()) / len(values) if values else 0.0


def means(values: PerQuery, names: Iterable[str]) -> dict[str, float]:
    return {name: mean(values, name) for name in names}


def wins_ties_losses(baseline: PerQuery, reranked: PerQuery, name: str = WIN_METRIC) -> tuple[int, int, int]:
    wins = ties = losses = 0
    for query_id, before in baseline.items():
        change = reranked[query_id][name] - before[name]
        if change > TIE_TOLERANCE:
            wins += 1
        elif change < -TIE_TOLERANCE:
            losses += 1
        else:
            ties += 1
    return wins, ties, losses


def paired_p_value(baseline: PerQuery, reranked: PerQuery, name: str = WIN_METRIC) -> float | None:
    """Two-sided paired t-test (scipy's ttest_rel, ranx's 'student') on per-query values; None when undefined."""
    from scipy.stats import ttest_rel

    query_ids = list(baseline)
    before = [baseline[query_id][name] for query_id in query_ids]
    after = [reranked[query_id][name] for query_id in query_ids]
    if len(query_ids) < 2 or all(abs(a - b) <= TIE_TOLERANCE for a, b in zip(before, after, strict=True)):
        return None  # no differences at all: the test statistic is 0/0
    p_value = float(ttest_rel(after, before).pvalue)
    return None if math.isnan(p_value) else p_value


def curves(qrels: Qrels, rankings: Rankings, query_ids: Sequence[str]) -> dict[str, list[float]]:
    """Mean nDCG@k and Recall@k for k = 1..10 (the plot's left panel)."""
    metrics: dict[str, Any] = {}
    for depth in CURVE_DEPTHS:
        metrics[f"ndcg@{depth}"] = ir_measures.nDCG @ depth
        metrics[f"recall@{depth}"] = ir_measures.R @ depth
    values = per_query(qrels, rankings, query_ids, metrics)
    return {kind: [mean(values, f"{kind}@{depth}") for depth in CURVE_DEPTHS] for kind in ("ndcg", "recall")}


def latency_percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    if not latencies_ms:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}
