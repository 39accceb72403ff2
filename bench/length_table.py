"""The latency tables of bench/run.py: per vCPU count, one row per length distribution, the better median of repeats."""

from __future__ import annotations

import statistics
from typing import Any

from tools.fixture_model.length_mix import LENGTH_MIXES

COLUMNS = {
    "ours": "ours",
    "flashrank": "FlashRank default",
    "flashrank-1-thread": "FlashRank, 1 thread",
    "bound": "bound",
    "batched-bound": "batched bound",
    "batched-floor": "batched floor",
}
RATIOS = (("flashrank-1-thread", "FlashRank 1 thread / ours"), ("flashrank", "FlashRank default / ours"))
SETTING_NAMES = {1: "One vCPU (1769 MB)", 2: "Two vCPUs (3538 MB)"}

# Child results of one contender at one vCPU count, one per repeat (bench/contenders.py's JSON).
Repeats = list[dict[str, Any]]


def best_median_ms(repeats: Repeats, distribution: str, size: int) -> float | None:
    """The better (lower) of the repeats' medians, in ms; None when the contender is not available."""
    medians = [
        statistics.median(result["timings"][distribution][str(size)]) * 1000
        for result in repeats
        if result.get("available")
    ]
    return min(medians) if medians else None


def best_variant(repeats: Repeats, distribution: str, size: int) -> str | None:
    """The variant (the batched bound's batch size) of the repeat with the better median."""
    timed = [result for result in repeats if result.get("available")]
    if not timed:
        return None
    best = min(timed, key=lambda result: statistics.median(result["timings"][distribution][str(size)]))
    return str(best["variant"][distribution][str(size)])


def tokens_per_pair(by_contender: dict[str, Repeats], distribution: str, size: int) -> float | None:
    for result in by_contender.get("bound", []):
        if result.get("available"):
            return float(result["tokens_per_pair"][distribution][str(size)])
    return None


def best_medians(
    latency: dict[int, dict[str, Repeats]], distributions: list[str], sizes: list[int]
) -> dict[int, dict[str, dict[str, dict[str, float | None]]]]:
    """vCPUs -> distribution -> size -> contender -> best median ms (None: n/a)."""
    return {
        vcpus: {
            name: {
                str(size): {
                    contender: best_median_ms(repeats, name, size)
                    for contender, repeats in by_contender.items()
                }
                for size in sizes
            }
            for name in distributions
        }
        for vcpus, by_contender in latency.items()
    }


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def latency_table(by_contender: dict[str, Repeats], distributions: list[str], sizes: list[int]) -> list[str]:
    contenders = [name for name in COLUMNS if name in by_contender]
    ratios = [(name, label) for name, label in RATIOS if name in by_contender and "ours" in by_contender]
    header = ["passages", "tokens per pair (median)"] + [COLUMNS[name] for name in contenders]
    header += [label for _, label in ratios]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
    ]
    for name in distributions:
        for size in sizes:
            label = LENGTH_MIXES[name].label + (f", {size} per request" if len(sizes) > 1 else "")
            medians = {
                contender: best_median_ms(by_contender[contender], name, size) for contender in contenders
            }
            tokens = tokens_per_pair(by_contender, name, size)
            cells = [label, "n/a" if tokens is None else f"{tokens:.0f}"]
            cells += [_cell(medians[contender]) for contender in contenders]
            for batched in ("batched-bound", "batched-floor"):
                if batched in contenders and medians[batched] is not None:
                    variant = best_variant(by_contender[batched], name, size)
                    cells[2 + contenders.index(batched)] += f" ({variant})"
            cells += [_ratio(medians[contender], medians["ours"]) for contender, _ in ratios]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


LEGEND = (
    "ours: the engine as the function configures itself for the vCPUs. FlashRank default: its Ranker as shipped "
    "(onnxruntime's default intra-op threads: one per core it sees). FlashRank, 1 thread: the same with its "
    "session set to one intra-op thread. bound: each pair alone through the original graph, already tokenized, "
    "unpadded, one intra-op thread, pairs shared over as many threads as vCPUs: onnxruntime time only. batched "
    "bound: the same in exact padded batches through the engine's batched session, the fastest batch size "
    "tried (n/a: the engine has none). batched floor: the batched bound's batches through the original graph, "
    "whose scores are not exact: the least any batching on onnxruntime's own kernels could take. "
    "Tokens per pair: query and passage with the special tokens, cut at the model's limit."
)


def report(
    latency: dict[int, dict[str, Repeats]],
    distributions: list[str],
    sizes: list[int],
    *,
    model: str,
    trials: int,
) -> list[str]:
    lines: list[str] = [LEGEND, ""]
    for vcpus, by_contender in latency.items():
        repeats = max(len(results) for results in by_contender.values())
        per_request = (
            f"{sizes[0]} passages per request" if len(sizes) == 1 else "passages per request as named"
        )
        lines += [
            f"{SETTING_NAMES.get(vcpus, f'{vcpus} vCPUs')}: a CPU quota of {vcpus} vCPU(s) on each contender's "
            f"own fresh process; {model}; {per_request}; median of {trials} warm requests, the better of "
            f"{repeats} process(es) per contender",
            "",
            *latency_table(by_contender, distributions, sizes),
            "",
        ]
    return lines
