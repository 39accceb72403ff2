"""The evaluation shown to a person: a table on the terminal (rich) and a PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.evaluate.evaluation import Evaluation
from tools.evaluate.metrics import CURVE_DEPTHS, METRICS, VERDICT_METRIC, WIN_METRIC


def print_report(evaluation: Evaluation, console: Console, *, target: str, min_gain: float) -> None:
    summary = evaluation.summary
    console.print(
        f"{summary['queries']} queries, up to {summary['candidates']} first-stage candidates each; {target}",
        highlight=False,
    )
    table = Table()
    table.add_column("metric")
    table.add_column("first stage", justify="right")
    table.add_column("reranked", justify="right")
    table.add_column("delta", justify="right")
    for name in METRICS:
        change = summary["delta"][name]
        colour = "green" if change > 0 else "red" if change < 0 else "white"
        table.add_row(
            name,
            f"{summary['baseline'][name]:.4f}",
            f"{summary['reranked'][name]:.4f}",
            f"[{colour}]{change:+.4f}[/{colour}]",
        )
    console.print(table)
    p_value = summary["p_value"]
    latency = summary["latency_ms"]
    shown_p = "n/a (no per-query differences)" if p_value is None else f"{p_value:.3g}"
    console.print(
        f"per query ({WIN_METRIC}): {summary['wins']} wins, {summary['ties']} ties, {summary['losses']} losses; "
        f"paired t-test p = {shown_p}"
    )
    if latency["p50"] is None:
        console.print("latency: no successful request")
    else:
        console.print(
            f"latency per request: p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms"
        )
    console.print(
        f"failures: {summary['failures']} (those queries keep their first-stage order); "
        f"deadline fallbacks: {summary['fallbacks']}"
    )
    gain = summary["delta"][VERDICT_METRIC]
    verdict = (
        "[bold green]worth it[/bold green]" if summary["worth_it"] else "[bold red]not worth it[/bold red]"
    )
    console.print(f"verdict: {verdict} ({VERDICT_METRIC} gain {gain:+.4f}, threshold {min_gain:+.4f})")


def write_plot(evaluation: Evaluation, path: Path, *, title: str, min_gain: float) -> None:
    """Left: nDCG@k and Recall@k, first stage against reranked; right: the request latency distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = evaluation.summary
    figure, (quality, latency) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    depths = list(CURVE_DEPTHS)
    styles: dict[str, dict[str, Any]] = {
        "baseline": {"linestyle": "--", "marker": "o", "label": "first stage"},
        "reranked": {"linestyle": "-", "marker": "s", "label": "reranked"},
    }
    for kind, colour in (("ndcg", "tab:blue"), ("recall", "tab:orange")):
        for run, style in styles.items():
            label = f"{'nDCG' if kind == 'ndcg' else 'Recall'}@k, {style['label']}"
            quality.plot(
                depths,
                evaluation.curves[run][kind],
                color=colour,
                linestyle=style["linestyle"],
                marker=style["marker"],
                markersize=4,
                label=label,
            )
    quality.set_xlabel("k (cut-off)")
    quality.set_ylabel("mean over queries")
    quality.set_xticks(depths)
    quality.set_ylim(0, 1.02)
    quality.grid(alpha=0.3)
    quality.legend(loc="lower right", fontsize=8)
    gain = summary["delta"][VERDICT_METRIC]
    quality.set_title(
        f"Quality: {VERDICT_METRIC} {summary['baseline'][VERDICT_METRIC]:.3f} -> "
        f"{summary['reranked'][VERDICT_METRIC]:.3f} ({gain:+.3f}); "
        f"{summary['wins']} wins / {summary['ties']} ties / {summary['losses']} losses",
        fontsize=10,
    )

    percentiles = summary["latency_ms"]
    if evaluation.latencies_ms:
        latency.hist(evaluation.latencies_ms, bins=30, color="tab:gray", alpha=0.8)
        for name, colour in (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red")):
            latency.axvline(
                percentiles[name], color=colour, linestyle="--", label=f"{name} {percentiles[name]:.1f} ms"
            )
        latency.legend(fontsize=8)
    else:
        latency.text(0.5, 0.5, "no successful request", ha="center", va="center", transform=latency.transAxes)
    latency.set_xlabel("request latency (ms)")
    latency.set_ylabel("requests")
    latency.grid(alpha=0.3)
    latency.set_title(
        f"Latency: {len(evaluation.latencies_ms)} requests, {summary['failures']} failures, "
        f"{summary['fallbacks']} deadline fallbacks",
        fontsize=10,
    )
    verdict = "Yes" if summary["worth_it"] else "No"
    figure.suptitle(
        f"{title} {verdict}: {VERDICT_METRIC} {gain:+.3f} against a threshold of {min_gain:+.3f}", fontsize=12
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
