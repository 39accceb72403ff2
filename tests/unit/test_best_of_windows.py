"""From runs' logits to passages' scores: the same score for the same logit in any batch, best window kept."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.best_of_windows import BestOfWindows
from reranker.logits import logits_to_scores, sigmoid
from reranker.tokenization import PairInput


def pair(passage: int) -> PairInput:
    return PairInput(passage, [101, 102], [0, 0])


@settings(max_examples=200, deadline=None)
@given(logits=st.lists(st.floats(-40, 40, width=32), min_size=1, max_size=12), cut=st.integers(0, 12))
def test_a_one_logit_score_is_the_same_alone_or_in_any_batch(logits: list[float], cut: int) -> None:
    # Given the same logits, once each in its own run and once split into two batches
    runs = [pair(index) for index in range(len(logits))]
    alone, batched = BestOfWindows(runs, len(runs)), BestOfWindows(runs, len(runs))
    for run, logit in zip(runs, logits, strict=True):
        alone.record([run], np.array([[logit]], dtype=np.float32))
    table = np.array([[logit] for logit in logits], dtype=np.float32)
    for rows in (slice(0, cut), slice(cut, None)):
        if runs[rows]:
            batched.record(runs[rows], table[rows])
    # Then every passage gets the same score and logit, bit for bit: sigmoid of its logit
    assert batched.results() == alone.results()
    scores, raw = alone.results()
    assert scores == [sigmoid(logit) for logit in raw]  # type: ignore[arg-type]
    assert alone.windows == batched.windows == len(logits)


def test_each_passage_keeps_its_best_window_once_all_of_its_windows_ran() -> None:
    # Given passage 0 in two windows, passage 1 in one, passage 2 in three of which only two ran
    runs = [pair(0), pair(0), pair(1), pair(2), pair(2), pair(2)]
    best = BestOfWindows(runs, 4)
    best.record([runs[0], runs[2]], np.array([[0.5], [-1.0]], dtype=np.float32))
    best.record([runs[1]], np.array([[2.0]], dtype=np.float32))
    best.record([runs[3], runs[4]], np.array([[3.0], [1.0]], dtype=np.float32))
    scores, logits = best.results()
    assert logits == [2.0, -1.0, None, None]
    assert scores == [sigmoid(2.0), sigmoid(-1.0), None, None]
    assert best.windows == 5


def test_multi_column_scores_are_each_rows_softmax_and_the_logit_the_column_difference() -> None:
    runs = [pair(0), pair(1), pair(0)]
    best = BestOfWindows(runs, 2)
    table = np.array([[0.0, 1.0], [2.0, -1.0], [0.0, 3.0]], dtype=np.float32)
    best.record(runs[:2], table[:2])
    best.record(runs[2:], table[2:])
    scores, logits = best.results()
    expected = logits_to_scores(table).tolist()
    assert scores == [max(expected[0], expected[2]), expected[1]]
    assert logits == [3.0, -3.0]


def test_nothing_ran_nothing_scored() -> None:
    best = BestOfWindows([pair(0), pair(1)], 3)
    assert best.results() == ([None, None, None], [None, None, None])
    assert best.windows == 0
