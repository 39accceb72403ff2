"""Which pairs run together: short pairs in exact padded batches, the others alone, at the least estimated cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reranker.run_costs import RunCosts


@dataclass(frozen=True)
class PlannedRun:
    """One model run of the plan: the positions of its pairs (length-sorted; one: a run alone) and its cost."""

    pairs: tuple[int, ...]
    seconds: float

    @property
    def batched(self) -> bool:
        return len(self.pairs) > 1


def plan_runs(
    lengths: Sequence[int],
    costs: RunCosts,
    *,
    max_batch_pairs: int,
    parallel_runs: int = 1,
    min_gain: float = 0.0,
) -> list[PlannedRun]:
    """Every pair (by position in ``lengths``, its token count) planned into exactly one run.

    Pairs of at most ``costs.max_tokens`` tokens are sorted by length, so that a batch pads little, and cut into
    consecutive groups by dynamic programming: each group runs as one padded batch of up to ``max_batch_pairs``
    or each of its pairs alone, whichever the costs say is quicker (all alone is one of the plans weighed, so the
    plan is never estimated slower than it). Longer pairs run alone. A batch is weighed as if it took
    1 / (1 - ``min_gain``) times its estimate: it must save at least that share of the time, a margin for the
    costs' own error (0.1: batches only where they save a tenth).

    With ``parallel_runs`` workers, a batch holds at most an even share of the short pairs, so that every worker
    gets some of them, and the runs go costliest first, so that the request's tail is made of the cheapest
    runs. With one worker the batches go first, then the runs alone, each in the order of their first pair:
    a run right after one on the other session is slower (its session's data are out of the cache).
    """
    short = sorted(
        (position for position, tokens in enumerate(lengths) if tokens <= costs.max_tokens),
        key=lambda position: lengths[position],
    )
    largest = min(max_batch_pairs, math.ceil(len(short) / max(1, parallel_runs)))
    ordered = [lengths[position] for position in short]
    planned = [
        PlannedRun(
            tuple(short[start:end]),
            costs.single(ordered[start]) if end - start == 1 else costs.batch(end - start, ordered[end - 1]),
        )
        for start, end in _cheapest_groups(ordered, costs, largest, 1 / (1 - min_gain))
    ] + [
        PlannedRun((position,), costs.single(tokens))
        for position, tokens in enumerate(lengths)
        if tokens > costs.max_tokens
    ]
    if parallel_runs > 1:
        planned.sort(key=lambda run: (-run.seconds, min(run.pairs)))
    else:
        planned.sort(key=lambda run: (not run.batched, min(run.pairs)))
    return planned


def _cheapest_groups(
    ordered: list[int], costs: RunCosts, largest: int, batch_weight: float
) -> list[tuple[int, int]]:
    """(start, end) of each group: a batch of ``ordered[start:end]`` (ascending lengths), or one pair alone.

    best[end] is the least cost of the first ``end`` pairs; a batch ending at ``end`` pads to ordered[end - 1].
    O(len(ordered) * largest) steps.
    """
    count = len(ordered)
    best = [0.0] * (count + 1)
    size = [1] * (count + 1)
    single_base, single_per_token = costs.single_base, costs.single_per_token
    batch_base = costs.batch_base
    for end in range(1, count + 1):
        length = ordered[end - 1]
        chosen, cheapest = 1, best[end - 1] + (single_base + single_per_token * length)
        per_row = costs.batch_per_row + costs.batch_per_token * length
        for rows in range(2, min(largest, end) + 1):
            cost = best[end - rows] + (batch_base + rows * per_row) * batch_weight
            if cost < cheapest:
                chosen, cheapest = rows, cost
        best[end], size[end] = cheapest, chosen
    groups: list[tuple[int, int]] = []
    end = count
    while end > 0:
        groups.append((end - size[end], end))
        end -= size[end]
    groups.reverse()
    return groups
