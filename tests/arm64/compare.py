"""How arm64 answers are held against x86_64 ones: the same answer but for scores, which int8 kernels may move a
little (ARCH_TOLERANCE), and so the same order except where two scores are closer than twice that."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from typing import Any

PARITY_TOLERANCE = 1e-5  # FlashRank against the engine, on one architecture (tests/integration uses the same)
# x86_64 against arm64 int8 scores: not asserted equal, only bounded. Measured here up to a few 1e-3; a broken
# kernel or CPU model is far worse (QEMU's `-cpu max` SME emulation moves scores by up to 2.5e-2).
ARCH_TOLERANCE = 1e-2
NEAR_TIE = 2 * ARCH_TOLERANCE  # two scores this close may swap when each moves by ARCH_TOLERANCE
SCORE_KEYS = ("score", "relevance_score")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_ranking(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and any(key in item for key in SCORE_KEYS) for item in value)
    )


def rankings(body: Any) -> list[list[dict[str, Any]]]:
    """Every list of scored results in an answer (native, Cohere, TEI, batch), in document order."""
    if is_ranking(body):
        return [body]
    children = body.values() if isinstance(body, dict) else body if isinstance(body, list) else ()
    return [ranking for child in children for ranking in rankings(child)]


def result_key(item: dict[str, Any]) -> str:
    return json.dumps({name: item[name] for name in ("index", "id") if name in item}, sort_keys=True)


def result_score(item: dict[str, Any]) -> float:
    return float(next(item[key] for key in SCORE_KEYS if key in item))


def without_scores(value: Any) -> Any:
    """The answer with scores blanked, results in key order, and what differs between any two runs masked:
    generated ids (Cohere's uuid4) and measured durations (/health's load_seconds)."""
    if is_ranking(value):
        items = [
            {k: (None if k in SCORE_KEYS else without_scores(v)) for k, v in item.items()} for item in value
        ]
        return sorted(items, key=result_key)
    if isinstance(value, dict):
        return {
            key: "<seconds>" if key.endswith("_seconds") else without_scores(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [without_scores(item) for item in value]
    if isinstance(value, str) and UUID.match(value):
        return "<uuid>"
    return value


def order_swaps(
    ordered_keys: Sequence[str], reference: dict[str, float]
) -> tuple[int, list[tuple[str, str]]]:
    """(pairs of neighbours ordered against the reference scores, those of them that are not near ties)."""
    swapped = [(a, b) for a, b in itertools.pairwise(ordered_keys) if reference[a] < reference[b]]
    wrong = [(a, b) for a, b in swapped if reference[b] - reference[a] > NEAR_TIE]
    return len(swapped), wrong


def ranked(scores: Sequence[float]) -> list[str]:
    """Positions as keys, best score first (ties by position, as the engine sorts)."""
    return [str(index) for index in sorted(range(len(scores)), key=lambda index: (-scores[index], index))]


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as paths with both values."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [
            line
            for key in sorted(ours.keys() | theirs.keys())
            for line in differences(ours.get(key, "<missing>"), theirs.get(key, "<missing>"), f"{path}.{key}")
        ]
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [
            line
            for index, pair in enumerate(zip(ours, theirs, strict=True))
            for line in differences(*pair, f"{path}[{index}]")
        ]
    return [] if ours == theirs else [f"{path or '.'}: {ours!r} on arm64, {theirs!r} on x86_64"]
