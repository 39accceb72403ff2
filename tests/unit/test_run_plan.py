"""The run planner and the cost fit, as pure functions: no model, no onnxruntime."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.run_costs import PROBE_ROUNDS, ProbeShapes, RunCosts, fit_run_costs, measure_run_costs
from reranker.run_plan import PlannedRun, plan_runs
from tests.run_cost_shapes import BATCHES_NEVER_PAY, NANO_LIKE

_COSTS = st.builds(
    RunCosts,
    single_base=st.floats(0, 1e-3),
    single_per_token=st.floats(0, 1e-4),
    batch_base=st.floats(0, 2e-3),
    batch_per_row=st.floats(0, 1e-3),
    batch_per_token=st.floats(0, 1e-4),
    max_tokens=st.integers(2, 512),
)


def plan_cost(plan: list[PlannedRun]) -> float:
    return sum(run.seconds for run in plan)


def all_alone_cost(lengths: list[int], costs: RunCosts) -> float:
    return sum(costs.single(tokens) for tokens in lengths)


# --- the planner ------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 512), max_size=120),
    costs=_COSTS,
    max_batch_pairs=st.integers(1, 64),
    parallel_runs=st.integers(1, 6),
    min_gain=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_every_pair_is_planned_once_batches_are_sorted_and_the_plan_is_never_costlier_than_all_alone(
    lengths: list[int], costs: RunCosts, max_batch_pairs: int, parallel_runs: int, min_gain: float
) -> None:
    plan = plan_runs(
        lengths, costs, max_batch_pairs=max_batch_pairs, parallel_runs=parallel_runs, min_gain=min_gain
    )
    planned = [position for run in plan for position in run.pairs]
    assert sorted(planned) == list(range(len(lengths)))
    for run in plan:
        batch_lengths = [lengths[position] for position in run.pairs]
        assert batch_lengths == sorted(batch_lengths)
        if run.batched:
            assert len(run.pairs) <= max_batch_pairs
            assert max(batch_lengths) <= costs.max_tokens
            assert run.seconds == costs.batch(len(run.pairs), max(batch_lengths))
        else:
            assert run.seconds == costs.single(batch_lengths[0])
    alone = all_alone_cost(lengths, costs)
    assert plan_cost(plan) <= alone * (1 + 1e-9) + 1e-15


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 80), max_size=9),
    costs=_COSTS,
    max_batch_pairs=st.integers(2, 9),
    min_gain=st.sampled_from([0.0, 0.2]),
)
def test_the_plan_is_the_cheapest_of_all_groupings_of_the_sorted_pairs(
    lengths: list[int], costs: RunCosts, max_batch_pairs: int, min_gain: float
) -> None:
    # Every way to cut the sorted short pairs into consecutive groups, each a batch or pairs alone, a batch
    # weighed at its cost / (1 - min_gain).
    plan = plan_runs(lengths, costs, max_batch_pairs=max_batch_pairs, min_gain=min_gain)
    weight = 1 / (1 - min_gain)
    short = sorted(tokens for tokens in lengths if tokens <= costs.max_tokens)
    long_cost = sum(costs.single(tokens) for tokens in lengths if tokens > costs.max_tokens)
    best = min(
        (
            _grouping_cost(short, cuts, costs, max_batch_pairs, weight)
            for cuts in itertools.product([False, True], repeat=max(0, len(short) - 1))
        ),
        default=0.0,
    )
    weighed = sum(run.seconds * (weight if run.batched else 1.0) for run in plan)
    assert weighed == pytest.approx(best + long_cost, rel=1e-9, abs=1e-15)


def _grouping_cost(
    short: list[int], cuts: tuple[bool, ...], costs: RunCosts, largest: int, weight: float
) -> float:
    groups: list[list[int]] = [[short[0]]] if short else []
    for tokens, cut in zip(short[1:], cuts, strict=True):
        if cut:
            groups.append([tokens])
        else:
            groups[-1].append(tokens)
    total = 0.0
    for group in groups:
        alone = sum(costs.single(tokens) for tokens in group)
        batched = costs.batch(len(group), group[-1]) * weight if 1 < len(group) <= largest else alone
        total += min(alone, batched)
    return total


def test_short_pairs_go_to_batches_and_long_ones_run_alone() -> None:
    # Given 40 short pairs and 3 past the batch limit
    lengths = [12 + position % 9 for position in range(40)] + [200, 512, 65]
    plan = plan_runs(lengths, NANO_LIKE, max_batch_pairs=16)
    alone = {run.pairs[0] for run in plan if not run.batched}
    assert {40, 41, 42} <= alone
    assert sum(len(run.pairs) for run in plan if run.batched) == 40
    assert all(len(run.pairs) <= 16 for run in plan)
    assert plan_cost(plan) < 0.6 * all_alone_cost(lengths, NANO_LIKE)


def test_a_batch_that_saves_less_than_the_margin_is_not_planned() -> None:
    # Given four pairs of 20 tokens: alone 4 x 160 us = 640 us, one batch 200 + 4 x 52 us = 408 us (36 % less)
    lengths = [20, 20, 20, 20]
    assert plan_runs(lengths, NANO_LIKE, max_batch_pairs=4, min_gain=0.3)[0].pairs == (0, 1, 2, 3)
    assert [run.pairs for run in plan_runs(lengths, NANO_LIKE, max_batch_pairs=4, min_gain=0.4)] == [
        (0,),
        (1,),
        (2,),
        (3,),
    ]


def test_when_batches_never_pay_every_pair_runs_alone_in_order() -> None:
    lengths = [10, 30, 20, 64, 8]
    plan = plan_runs(lengths, BATCHES_NEVER_PAY, max_batch_pairs=16)
    assert [run.pairs for run in plan] == [(0,), (1,), (2,), (3,), (4,)]


def test_one_worker_runs_the_batches_then_the_pairs_alone_each_in_order() -> None:
    lengths = [40, 10, 11, 300, 41, 12, 13, 500]
    plan = plan_runs(lengths, NANO_LIKE, max_batch_pairs=3)
    kinds = [run.batched for run in plan]
    assert kinds == sorted(kinds, reverse=True) and True in kinds and False in kinds
    for batched in (True, False):
        firsts = [min(run.pairs) for run in plan if run.batched == batched]
        assert firsts == sorted(firsts)
    assert [run.pairs for run in plan][-2:] == [(3,), (7,)]


def test_several_workers_share_the_short_pairs_and_start_with_the_costliest_runs() -> None:
    # Given 12 short pairs and one long one, two workers
    lengths = [16] * 12 + [400]
    plan = plan_runs(lengths, NANO_LIKE, max_batch_pairs=32, parallel_runs=2)
    # Then no batch takes more than half the short pairs, and the runs go costliest first
    assert all(len(run.pairs) <= 6 for run in plan)
    assert sum(run.batched for run in plan) >= 2
    seconds = [run.seconds for run in plan]
    assert seconds == sorted(seconds, reverse=True)


def test_a_batch_limit_of_one_plans_every_pair_alone() -> None:
    plan = plan_runs([10, 12, 14], NANO_LIKE, max_batch_pairs=1)
    assert [run.pairs for run in plan] == [(0,), (1,), (2,)]


def test_no_pairs_no_runs() -> None:
    assert plan_runs([], NANO_LIKE, max_batch_pairs=16) == []


# --- the cost fit ---------------------------------------------------------------------------------------------


def test_the_fit_recovers_costs_that_are_exactly_linear() -> None:
    shapes = ProbeShapes.up_to(64)
    got = fit_run_costs(
        shapes,
        [NANO_LIKE.single(tokens) for tokens in shapes.single],
        [NANO_LIKE.batch(rows, length) for rows, length in shapes.batch],
        64,
    )
    for name in ("single_base", "single_per_token", "batch_base", "batch_per_row", "batch_per_token"):
        assert getattr(got, name) == pytest.approx(getattr(NANO_LIKE, name), rel=1e-6, abs=1e-12)


def test_a_coefficient_the_noise_pushes_below_zero_is_zero_and_the_others_refit() -> None:
    shapes = ProbeShapes.up_to(64)
    # Times that fall with length would fit a negative per-token cost
    single = [98e-6, 100e-6]  # 32 tokens, then 8
    # and batch times that grow with the tokens but fall with the rows alone
    batch = [500e-6, 290e-6, 300e-6]  # 2 x 32, 6 x 8, 2 x 8
    got = fit_run_costs(shapes, single, batch, 64)
    assert got.single_per_token == 0.0
    assert got.single_base == pytest.approx(99e-6)
    assert min(got.batch_base, got.batch_per_row, got.batch_per_token) >= 0.0
    assert got.batch(2, 8) > 0


def probe_runs(
    first_run_slowdown: float = 5.0,
) -> tuple[list[tuple[str, tuple[int, ...]]], Callable[[], float], Callable[..., None], Callable[..., None]]:
    """Runs whose times the test dictates (NANO_LIKE's), the first of each shape slower; the clock they advance."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    now = [0.0]

    def runner(kind: str) -> Callable[..., None]:
        def run(*shape: int) -> None:
            seconds = NANO_LIKE.single(shape[0]) if kind == "single" else NANO_LIKE.batch(*shape)
            now[0] += seconds * (1 if (kind, shape) in calls else first_run_slowdown)
            calls.append((kind, shape))

        return run

    return calls, lambda: now[0], runner("single"), runner("batch")


def test_the_probe_times_each_kind_together_and_keeps_each_shapes_quickest_run() -> None:
    # Given runs whose first of every shape is five times slower (a first run allocates)
    calls, clock, single, batch = probe_runs()
    # When the costs are measured with room for every round
    got = measure_run_costs(single, batch, 64, budget_seconds=1.0, clock=clock)
    # Then each kind ran its cheapest shape untimed, then PROBE_ROUNDS rounds of its shapes, largest first
    shapes = ProbeShapes.up_to(64)
    singles = [("single", (tokens,)) for tokens in shapes.single]
    batches = [("batch", shape) for shape in shapes.batch]
    assert calls == [
        ("single", (8,)),
        *singles * PROBE_ROUNDS,
        ("batch", (2, 8)),
        *batches * PROBE_ROUNDS,
    ]
    assert singles[0] == ("single", (32,)) and batches[0] == ("batch", (2, 32))
    # and the fit is the costs without the slow first runs
    for name in ("single_base", "single_per_token", "batch_base", "batch_per_row", "batch_per_token"):
        assert getattr(got, name) == pytest.approx(getattr(NANO_LIKE, name), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("budget_ms", "single_rounds", "batch_rounds"),
    [(0, 1, 1), (2, 2, 1), (3, 3, 1), (5, 3, 2), (100, PROBE_ROUNDS, PROBE_ROUNDS)],
)
def test_rounds_after_the_first_run_only_while_they_fit_in_half_the_budget(
    budget_ms: int, single_rounds: int, batch_rounds: int
) -> None:
    # NANO_LIKE's probe, every run as quick as the next: a round of pairs alone takes 0.32 ms, of batches 0.96 ms
    calls, clock, single, batch = probe_runs(first_run_slowdown=1.0)
    measure_run_costs(single, batch, 64, budget_seconds=budget_ms / 1000, clock=clock)
    shapes = ProbeShapes.up_to(64)
    assert len(calls) == 2 + single_rounds * len(shapes.single) + batch_rounds * len(shapes.batch)
    assert clock() <= max(budget_ms / 1000, 0.00167)


@pytest.mark.parametrize("max_tokens", [2, 3, 8, 9, 16, 64, 512])
def test_probe_shapes_stay_within_the_limit_and_determine_every_coefficient(max_tokens: int) -> None:
    shapes = ProbeShapes.up_to(max_tokens)
    assert max(shapes.single) <= max_tokens and len(set(shapes.single)) == 2
    assert all(1 <= length <= max_tokens for _, length in shapes.batch)
    design = np.array([[1.0, rows, rows * length] for rows, length in shapes.batch])
    assert np.linalg.matrix_rank(design) == 3
