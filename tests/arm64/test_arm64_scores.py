"""On arm64 (emulated Graviton2): score parity with FlashRank run on the package's own onnxruntime wheel, int8
batch invariance, and how far arm64 scores are from x86_64 ones (measured and bounded, not asserted equal)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.arm64.compare import ARCH_TOLERANCE, NEAR_TIE, PARITY_TOLERANCE, order_swaps, ranked
from tests.arm64.conftest import record
from tests.arm64.workload import BATCH_PASSAGES, FAMILIES, FP32_MAX_LENGTH, NANO, job_name

TOP = 10


def scores_of(report: dict[str, Any], family: str, kind: str, scorer: str) -> list[list[float]]:
    scores: list[list[float]] = report["scores"][job_name(family, kind, scorer)]
    return scores


def worst_difference(ours: list[list[float]], theirs: list[list[float]]) -> tuple[float, int]:
    pairs = [
        (a, b) for left, right in zip(ours, theirs, strict=True) for a, b in zip(left, right, strict=True)
    ]
    return max(abs(a - b) for a, b in pairs), len(pairs)


def test_the_scores_were_computed_on_arm64_with_the_packages_onnxruntime(
    arm64_scores: dict[str, Any], package: Any
) -> None:
    assert arm64_scores["machine"] == "aarch64"
    assert arm64_scores["onnxruntime"].startswith(str(package))
    seconds = ", ".join(f"{name} {value:.0f} s" for name, value in arm64_scores["seconds"].items())
    record(f"emulated scoring: {arm64_scores['wall_seconds']:.0f} s wall ({seconds})")


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_scores_match_flashrank_on_whole_requests_on_arm64(
    arm64_scores: dict[str, Any], family: str
) -> None:
    ours = scores_of(arm64_scores, family, "fp32", "engine")
    theirs = scores_of(arm64_scores, family, "fp32", "flashrank")
    worst, count = worst_difference(ours, theirs)
    record(
        f"parity fp32 {family} (whole requests, {FP32_MAX_LENGTH} tokens): max |diff| {worst:.1e} over {count}"
    )
    assert worst <= PARITY_TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_scores_are_flashrank_scores_of_the_passage_alone_on_arm64(
    arm64_scores: dict[str, Any], family: str
) -> None:
    ours = scores_of(arm64_scores, family, "int8", "engine")
    theirs = scores_of(arm64_scores, family, "int8", "flashrank_alone")
    worst, count = worst_difference(ours, theirs)
    record(f"parity int8 {family} (FlashRank with the passage alone): max |diff| {worst:.1e} over {count}")
    assert worst <= PARITY_TOLERANCE


def test_int8_score_alone_equals_its_score_in_a_60_passage_request_bit_for_bit(
    arm64_scores: dict[str, Any],
) -> None:
    [whole] = scores_of(arm64_scores, NANO, "int8", "engine")
    [alone] = scores_of(arm64_scores, NANO, "int8", "engine_alone")
    assert len(whole) == BATCH_PASSAGES
    assert alone == whole
    record(
        f"batch invariance int8 {NANO}: {len(whole)} of {len(whole)} scores alone = in the request, bit for bit"
    )


@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_x86_64_and_arm64_scores_differ_by_little_and_rank_alike_except_near_ties(
    arm64_scores: dict[str, Any], x86_64_scores: dict[str, Any], kind: str
) -> None:
    assert x86_64_scores["machine"] == "x86_64"
    for family in FAMILIES:
        arm64 = scores_of(arm64_scores, family, kind, "engine")
        x86_64 = scores_of(x86_64_scores, family, kind, "engine")
        worst, count = worst_difference(arm64, x86_64)
        identical = sum(
            a == b
            for left, right in zip(arm64, x86_64, strict=True)
            for a, b in zip(left, right, strict=True)
        )
        swaps = 0
        same_top = True
        for ours, theirs in zip(arm64, x86_64, strict=True):
            reference = {str(index): score for index, score in enumerate(theirs)}
            swapped, wrong = order_swaps(ranked(ours), reference)
            assert wrong == [], (
                f"{family} {kind}: arm64 orders {wrong} against x86_64 beyond near ties ({NEAR_TIE})"
            )
            swaps += swapped
            same_top &= ranked(ours)[:TOP] == ranked(theirs)[:TOP]
        record(
            f"x86_64 vs arm64 {kind} {family}: max |diff| {worst:.1e}, {identical} of {count} identical, "
            f"{swaps} neighbour swaps (near ties), top {TOP} {'identical' if same_top else 'differ (near ties)'}"
        )
        assert worst <= ARCH_TOLERANCE
