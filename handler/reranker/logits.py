"""From a model's logits to FlashRank's scores: sigmoid of one logit, else softmax column 1; overflow-free."""

from __future__ import annotations

import math

import numpy as np


def sigmoid(logit: float) -> float:
    """Overflow-free logistic function of one logit: every one-logit score the engine gives goes through it.

    Not always bit for bit stable_sigmoid's element: numpy's vectorized exp may round differently from
    math.exp (it did for about 2 % of logits on an AVX-512 machine), so one function must score every pair,
    whichever batch it ran in.
    """
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp_logit = math.exp(logit)
    return exp_logit / (1.0 + exp_logit)


def stable_sigmoid(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    positive = values >= 0
    exp_negative = np.exp(-np.abs(values))
    return np.where(positive, 1.0 / (1.0 + exp_negative), exp_negative / (1.0 + exp_negative))


def stable_softmax_positive(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    result: np.ndarray = shifted[:, 1] / shifted.sum(axis=1)
    return result


def raw_logits(logits: np.ndarray) -> np.ndarray:
    """One raw logit per row whose logistic function is the row's score (see logits_to_scores)."""
    values = logits.astype(np.float64)
    return values[:, 0] if values.shape[1] == 1 else values[:, 1] - values[:, 0]


def logits_to_scores(logits: np.ndarray) -> np.ndarray:
    """FlashRank's mapping: sigmoid of a single logit, else softmax column 1 over all columns; overflow-free."""
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"expected logits of shape (batch, columns >= 1), got {logits.shape}")
    return stable_sigmoid(logits[:, 0]) if logits.shape[1] == 1 else stable_softmax_positive(logits)
