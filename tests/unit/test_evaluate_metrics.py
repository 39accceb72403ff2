"""tools.evaluate.metrics against values computed by hand (trec_eval definitions: linear gains, log2 discounts)."""

from __future__ import annotations

import math

import pytest

from tools.evaluate import metrics
from tools.evaluate.evaluation import summarize

QRELS = {
    "q1": {"a": 2, "b": 1, "c": 0},  # graded; c is judged non-relevant
    "q2": {"d": 1},
    "q3": {"f": 1, "g": 1},
}
RANKINGS = {
    "q1": ["c", "a", "x", "b"],
    "q2": ["d", "e"],
    "q3": [],  # the first stage found nothing: every metric is 0, and the query still counts in the mean
}


def dcg(gains: list[int]) -> float:
    return sum(gain / math.log2(position + 2) for position, gain in enumerate(gains))


def test_per_query_values_match_hand_computation() -> None:
    values = metrics.per_query(QRELS, RANKINGS, ["q1", "q2", "q3"], metrics.METRICS)

    # q1: gains in rank order 0, 2, 0, 1; ideal order 2, 1.
    ideal = dcg([2, 1])
    assert values["q1"]["ndcg@1"] == 0.0
    assert values["q1"]["ndcg@3"] == pytest.approx(dcg([0, 2, 0]) / ideal)
    assert values["q1"]["ndcg@3"] == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert values["q1"]["ndcg@5"] == pytest.approx(dcg([0, 2, 0, 1]) / ideal)
    assert values["q1"]["ndcg@10"] == pytest.approx(dcg([0, 2, 0, 1]) / ideal)
    assert values["q1"]["mrr@10"] == pytest.approx(1 / 2)
    assert values["q1"]["recall@5"] == 1.0
    assert values["q2"] == pytest.approx(dict.fromkeys(metrics.METRICS, 1.0))
    assert values["q3"] == dict.fromkeys(metrics.METRICS, 0.0)

    means = metrics.means(values, metrics.METRICS)
    assert means["ndcg@3"] == pytest.approx((values["q1"]["ndcg@3"] + 1 + 0) / 3)
    assert means["mrr@10"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_recall_counts_relevant_documents_below_the_cut() -> None:
    qrels = {"q": {"r1": 1, "r2": 1, "r3": 1, "r4": 1}}
    ranking = {"q": ["n1", "r1", "n2", "n3", "n4", "r2", "n5", "n6", "n7", "r3", "r4"]}
    values = metrics.per_query(qrels, ranking, ["q"], metrics.METRICS)["q"]
    assert values["recall@5"] == pytest.approx(1 / 4)
    assert values["recall@10"] == pytest.approx(3 / 4)  # r4 is at rank 11
    assert values["ndcg@10"] == pytest.approx(dcg([0, 1, 0, 0, 0, 1, 0, 0, 0, 1]) / dcg([1, 1, 1, 1]))


def test_the_ranking_not_document_ids_breaks_ties() -> None:
    # trec_eval orders equal scores by document id; handing it ranks keeps the order the caller gave.
    values = metrics.per_query({"q": {"b": 1}}, {"q": ["a", "b"]}, ["q"], metrics.METRICS)["q"]
    assert values["ndcg@1"] == 0.0
    assert values["mrr@10"] == 0.5


def test_wins_ties_losses_and_paired_p_value() -> None:
    before = {f"q{i}": {"ndcg@10": value} for i, value in enumerate([0.2, 0.5, 0.1, 0.4, 0.3])}
    after = {f"q{i}": {"ndcg@10": value} for i, value in enumerate([0.6, 0.5, 0.3, 0.9, 0.2])}
    assert metrics.wins_ties_losses(before, after) == (3, 1, 1)

    differences = [0.4, 0.0, 0.2, 0.5, -0.1]
    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    t = mean / (sd / math.sqrt(n))
    from scipy.stats import t as student

    assert metrics.paired_p_value(before, after) == pytest.approx(2 * student.sf(abs(t), n - 1))


def test_p_value_is_none_without_any_difference() -> None:
    same = {"q1": {"ndcg@10": 0.5}, "q2": {"ndcg@10": 0.25}}
    assert metrics.paired_p_value(same, same) is None


def test_latency_percentiles() -> None:
    latencies = [float(value) for value in range(1, 101)]  # 1..100 ms
    assert metrics.latency_percentiles(latencies) == {"p50": 50.5, "p95": 95.05, "p99": 99.01}
    assert metrics.latency_percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_summary_has_exactly_the_documented_keys_and_the_verdict_threshold() -> None:
    reranked = {"q1": ["a", "b", "c"], "q2": ["d", "e"], "q3": []}
    summary = summarize(
        QRELS,
        RANKINGS,
        reranked,
        ["q1", "q2", "q3"],
        candidates=50,
        min_gain=0.03,
        latencies_ms=[10.0, 20.0],
        failures=1,
        fallbacks=0,
    )
    assert list(summary) == [
        "queries", "candidates", "baseline", "reranked", "delta", "wins", "ties", "losses",
        "p_value", "latency_ms", "failures", "fallbacks", "worth_it",
    ]  # fmt: skip
    keys = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "mrr@10", "recall@5", "recall@10"]
    for part in ("baseline", "reranked", "delta"):
        assert list(summary[part]) == keys
    assert list(summary["latency_ms"]) == ["p50", "p95", "p99"]
    assert (summary["wins"], summary["ties"], summary["losses"]) == (1, 2, 0)
    # q1 goes from nDCG@5 = dcg([0,2,0,1])/ideal to 1; the mean gain is a third of that.
    gain = (1 - dcg([0, 2, 0, 1]) / dcg([2, 1])) / 3
    assert summary["delta"]["ndcg@5"] == pytest.approx(gain)
    assert summary["worth_it"] is True
    stricter = summarize(
        QRELS, RANKINGS, reranked, ["q1", "q2", "q3"], candidates=50, min_gain=gain + 0.001,
        latencies_ms=[], failures=0, fallbacks=0,
    )  # fmt: skip
    assert stricter["worth_it"] is False
    exact = summarize(
        QRELS, RANKINGS, reranked, ["q1", "q2", "q3"], candidates=50, min_gain=gain,
        latencies_ms=[], failures=0, fallbacks=0,
    )  # fmt: skip
    assert exact["worth_it"] is True  # "a gain of at least --min-gain"
