"""./dev bench by length distribution: its options, its contenders as configured, and its tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bench.contenders import flashrank_ranker, measure, share_out
from bench.length_table import Repeats, best_median_ms, latency_table
from bench.run import parse_args
from reranker.engine import EngineOptions
from tests.models import fixture_model
from tools.fixture_model.length_mix import LENGTH_MIXES


def child(samples: list[float], variant: str = "as configured") -> dict[str, Any]:
    distribution, size = "short", "50"
    return {
        "available": True,
        "timings": {distribution: {size: samples}},
        "variant": {distribution: {size: variant}},
        "tokens_per_pair": {distribution: {size: 14.0}},
    }


def test_by_default_every_distribution_at_50_passages_12_requests_twice() -> None:
    args = parse_args([])
    assert args.distributions == list(LENGTH_MIXES)
    assert (args.sizes, args.trials, args.repeats, args.vcpus) == ((50,), 12, 2, (1, 2))
    quick = parse_args(["--quick", "--distributions", "short,msmarco"])
    assert quick.distributions == ["short", "msmarco"]
    assert (quick.trials, quick.repeats, quick.cold_runs) == (3, 1, 1)


def test_an_unknown_distribution_or_contender_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--distributions", "short,tiny"])
    assert "unknown distribution tiny; known: short," in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--contenders", "ours,tei"])
    assert "unknown contender tei" in capsys.readouterr().err


def test_the_better_median_of_the_repeats_is_kept() -> None:
    repeats = [child([0.030, 0.010, 0.020]), child([0.012, 0.016, 0.014])]
    assert best_median_ms(repeats, "short", 50) == pytest.approx(14.0)
    assert best_median_ms([{"available": False}], "short", 50) is None


def test_the_table_gives_both_ratios_and_na_for_a_missing_batched_bound() -> None:
    by_contender: dict[str, Repeats] = {
        "ours": [child([0.010])],
        "flashrank": [child([0.030])],
        "flashrank-1-thread": [child([0.015])],
        "bound": [child([0.008])],
        "batched-bound": [{"available": False}],
    }
    header, _, row = latency_table(by_contender, ["short"], [50])
    assert header.split(" | ")[-2:] == ["FlashRank 1 thread / ours", "FlashRank default / ours |"]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    label = LENGTH_MIXES["short"].label
    assert cells == [label, "14", "10.0 ms", "30.0 ms", "15.0 ms", "8.0 ms", "n/a", "1.50x", "3.00x"]


def test_the_batched_bound_and_floor_name_the_batch_size_of_their_better_repeat() -> None:
    by_contender: dict[str, Repeats] = {
        "ours": [child([0.010])],
        "batched-bound": [child([0.009], "batches of 8"), child([0.007], "batches of 50")],
        "batched-floor": [child([0.005], "batches of 16"), child([0.006], "batches of 8")],
    }
    _, _, row = latency_table(by_contender, ["short"], [50])
    assert [cell.strip() for cell in row.strip("|").split("|")][2:] == [
        "10.0 ms", "7.0 ms (batches of 50)", "5.0 ms (batches of 16)",
    ]  # fmt: skip


def test_the_bound_shares_pairs_out_longest_first_to_the_least_loaded_thread() -> None:
    assert share_out(["a", "b", "c", "d"], [10, 9, 8, 1], 2) == [["a", "d"], ["b", "c"]]
    assert share_out(["a"], [5], 2) == [["a"]]


def test_flashrank_with_one_thread_is_the_same_model_with_one_intra_op_thread() -> None:
    model = fixture_model("int8")
    tuned = flashrank_ranker(model, one_thread=True)
    shipped = flashrank_ranker(model, one_thread=False)
    assert tuned.session.get_session_options().intra_op_num_threads == 1
    assert shipped.session.get_session_options().intra_op_num_threads == 0  # onnxruntime's default


@pytest.mark.parametrize(
    "contender", ["ours", "flashrank-1-thread", "bound", "batched-bound", "batched-floor"]
)
def test_a_contender_child_times_each_distribution_and_size(contender: str) -> None:
    job = {
        "contender": contender,
        "model": str(fixture_model("int8")),
        "vcpus": 1,
        "distributions": ["short", "msmarco"],
        "sizes": [2, 3],
        "trials": 1,
        "seed": 1,
        "batch_sizes": [2, 8],
    }
    result = measure(job)
    if contender == "batched-bound" and "exact_batches" not in {
        f.name for f in dataclasses.fields(EngineOptions)
    }:
        assert result == {"available": False}  # this engine has no exact-batch session: the table says n/a
        return
    assert result["available"]
    assert {name: {size: len(samples) for size, samples in by_size.items()} for name, by_size in
            result["timings"].items()} == {"short": {"2": 1, "3": 1}, "msmarco": {"2": 1, "3": 1}}  # fmt: skip
    if contender == "bound":
        assert 8 < result["tokens_per_pair"]["short"]["2"] < 25
    if contender in ("batched-bound", "batched-floor"):
        assert set(result["variant"]["short"].values()) <= {"batches of 2", "batches of 8"}
