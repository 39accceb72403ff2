"""From the model runs' logits, as they come back, to each passage's score and logit: its best window's."""

from __future__ import annotations

import numpy as np

from reranker.logits import logits_to_scores, raw_logits, sigmoid
from reranker.tokenization import PairInput


class BestOfWindows:
    """Each passage's best score (and logit) over its runs, kept only once every run of it has come back.

    Runs are only collected as they come back; scores are worked out once, at the end, from all the logits
    together, the same way whichever batch a pair ran in: a one-logit model's score is ``sigmoid`` of the
    logit (the logistic function is monotonic, so the best window's score is that of its largest logit).
    """

    def __init__(self, runs: list[PairInput], passages: int) -> None:
        self._passages = passages
        self._batches: list[list[PairInput]] = []
        self._logits: list[np.ndarray] = []
        needed = [0] * passages
        for run in runs:
            needed[run.passage] += 1
        # None: one run per passage (no windows), the common case, with nothing to compare.
        self._needed = None if len(runs) == passages and all(needed) else needed

    def record(self, batch: list[PairInput], logits: np.ndarray) -> None:
        self._batches.append(batch)
        self._logits.append(logits)

    @property
    def windows(self) -> int:
        """The runs (pairs and windows) whose logits came back."""
        return sum(map(len, self._batches))

    def results(self) -> tuple[list[float | None], list[float | None]]:
        """Scores and logits in passage order; a passage whose runs were only partly scored gets None."""
        scores: list[float | None] = [None] * self._passages
        logits: list[float | None] = [None] * self._passages
        if not self._logits:
            return scores, logits
        table = self._logits[0] if len(self._logits) == 1 else np.concatenate(self._logits)
        raw: list[float] = raw_logits(table).tolist()
        values: list[float] = (
            [sigmoid(logit) for logit in raw] if table.shape[1] == 1 else logits_to_scores(table).tolist()
        )
        passages = [run.passage for batch in self._batches for run in batch]
        if self._needed is None:
            for passage, value, logit in zip(passages, values, raw, strict=True):
                scores[passage] = value
                logits[passage] = logit
            return scores, logits
        best: dict[int, tuple[float, float, int]] = {}
        for passage, value, logit in zip(passages, values, raw, strict=True):
            kept = best.get(passage)
            best[passage] = (
                (value, logit, 1) if kept is None else (max(kept[0], value), max(kept[1], logit), kept[2] + 1)
            )
        for passage, (value, logit, count) in best.items():
            if count == self._needed[passage]:
                scores[passage] = value
                logits[passage] = logit
        return scores, logits
