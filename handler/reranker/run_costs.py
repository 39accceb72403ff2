"""What a model run costs here: a few timed probe runs, fitted to a line per kind of run (alone, padded batch)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The shortest probe pair: about the shortest real one ([CLS] q [SEP] p [SEP] with a few words each).
SHORTEST_PROBE_TOKENS = 8
# Rows of the probe batches: the fit's per-row and per-token costs are read off these two sizes.
PROBE_ROWS = (2, 6)
# Rounds of timed runs of every probe shape, each shape keeping its quickest (the noise of a shared CPU, and a
# session's first run, which allocates, only add time); the rounds go round the shapes, so that a burst of noise
# does not land on every run of one shape. The first round always runs, the others only while they fit in the
# probe's budget: a large model gets one round, the nano three.
PROBE_ROUNDS = 3

Clock = Callable[[], float]


@dataclass(frozen=True)
class RunCosts:
    """Estimated seconds of one model run, fitted to the probe runs.

    Alone (the original graph): ``single_base + single_per_token * tokens``. As one padded batch (the batched
    graph): ``batch_base + rows * (batch_per_row + batch_per_token * length)``, length being the longest pair's.
    Measured up to ``max_tokens`` tokens a pair: longer pairs are not planned into batches.
    """

    single_base: float
    single_per_token: float
    batch_base: float
    batch_per_row: float
    batch_per_token: float
    max_tokens: int

    def single(self, tokens: int) -> float:
        return self.single_base + self.single_per_token * tokens

    def batch(self, rows: int, length: int) -> float:
        return self.batch_base + rows * (self.batch_per_row + self.batch_per_token * length)

    def describe(self) -> dict[str, float | int]:
        """The fitted costs in microseconds, for /health and the logs."""
        micro = {
            "single_base_us": self.single_base,
            "single_per_token_us": self.single_per_token,
            "batch_base_us": self.batch_base,
            "batch_per_row_us": self.batch_per_row,
            "batch_per_token_us": self.batch_per_token,
        }
        return {name: round(value * 1e6, 3) for name, value in micro.items()} | {
            "max_tokens": self.max_tokens
        }


@dataclass(frozen=True)
class ProbeShapes:
    """The probe runs: pairs alone of ``single`` token counts, padded batches of ``batch`` (rows, length)."""

    single: tuple[int, ...]
    batch: tuple[tuple[int, int], ...]

    @classmethod
    def up_to(cls, max_tokens: int) -> ProbeShapes:
        """Pairs of SHORTEST_PROBE_TOKENS and of half ``max_tokens``, alone and in batches of PROBE_ROWS.

        Half the limit, not all of it: a run's cost is close to linear in its tokens over this range, and the
        probe's time is mostly its longest runs.
        """
        longest = max(2, max_tokens // 2)
        shortest = max(1, min(SHORTEST_PROBE_TOKENS, longest // 2))  # two lengths: the fit needs both
        few, many = PROBE_ROWS
        # Largest first: a session's first run allocates for its shape, and smaller ones then reuse that.
        return cls(single=(longest, shortest), batch=((few, longest), (many, shortest), (few, shortest)))


def measure_run_costs(
    run_single: Callable[[int], object],
    run_batch: Callable[[int, int], object],
    max_tokens: int,
    budget_seconds: float,
    clock: Clock = time.perf_counter,
) -> RunCosts:
    """Time probe runs (``run_single(tokens)``, ``run_batch(rows, length)``) and fit RunCosts to them.

    Each kind in turn (half the budget each): one untimed run of its cheapest shape, then rounds of every shape
    (largest first), the first always, the others (up to PROBE_ROUNDS) while another fits in its half. Each kind's
    runs together, as the plan runs them: right after the other session's runs a run is slower for a few runs
    (measured: a nano pair 50 % slower right after a batch). No warm-up at the largest shape: it would cost a
    large model as much as a round.
    """
    shapes = ProbeShapes.up_to(max_tokens)
    half = budget_seconds / 2
    single_best = _quickest(run_single, [(tokens,) for tokens in shapes.single], half, clock)
    batch_best = _quickest(run_batch, list(shapes.batch), half, clock)
    return fit_run_costs(shapes, single_best, batch_best, max_tokens)


def _quickest(
    run: Callable[..., object], shapes: list[tuple[int, ...]], budget_seconds: float, clock: Clock
) -> list[float]:
    """Each shape's quickest run over the rounds that fit in ``budget_seconds`` (the first always runs)."""
    started = clock()
    run(*min(shapes, key=math.prod))
    best = [math.inf] * len(shapes)
    for _ in range(PROBE_ROUNDS):
        round_started = clock()
        for index, shape in enumerate(shapes):
            best[index] = min(best[index], _timed(clock, run, *shape))
        now = clock()
        if now + (now - round_started) - started > budget_seconds:
            break
    return best


def _timed(clock: Clock, run: Callable[..., object], *shape: int) -> float:
    started = clock()
    run(*shape)
    return clock() - started


def fit_run_costs(
    shapes: ProbeShapes, single_seconds: list[float], batch_seconds: list[float], max_tokens: int
) -> RunCosts:
    """Least-squares lines through the probe times, no coefficient below zero (noise can push one there)."""
    single_design = np.array([[1.0, tokens] for tokens in shapes.single])
    single_base, single_per_token = _nonnegative(single_design, single_seconds)
    batch_design = np.array([[1.0, rows, rows * length] for rows, length in shapes.batch])
    batch_base, batch_per_row, batch_per_token = _nonnegative(batch_design, batch_seconds)
    return RunCosts(
        single_base=single_base,
        single_per_token=single_per_token,
        batch_base=batch_base,
        batch_per_row=batch_per_row,
        batch_per_token=batch_per_token,
        max_tokens=max_tokens,
    )


def _nonnegative(design: np.ndarray, seconds: list[float]) -> list[float]:
    """Non-negative least squares for a few columns: refit without any coefficient that came out negative."""
    target = np.asarray(seconds, dtype=np.float64)
    kept = list(range(design.shape[1]))
    while True:
        solution, *_ = np.linalg.lstsq(design[:, kept], target, rcond=None)
        negative = [column for column, value in zip(kept, solution, strict=True) if value < 0]
        if not negative:
            break
        kept = [column for column in kept if column not in negative]
        if not kept:
            return [0.0] * design.shape[1]
    values = [0.0] * design.shape[1]
    for column, value in zip(kept, solution, strict=True):
        values[column] = float(value)
    return values
