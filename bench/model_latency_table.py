"""Per model: p50 and cost per million requests at 1,769, 3,538 and 10,240 MB and with fan-out, from measurements.

    .venv/bin/python -m bench.vcpu_scaling DIR/int8/<model> [...] --sizes 10 50 100 --json A.json
    .venv/bin/python -m bench.fanout --model-dir DIR/int8/ms-marco-MiniLM-L-12-v2 --json F.json
    .venv/bin/python -m bench.model_latency_table A.json [B.json ...] --fanout F.json [--target-ms 250 --workers 9]

Measured: 1 vCPU (1,769 MB) and 2 vCPUs (3,538 MB), CPU quotas, from bench.vcpu_scaling. Projected (marked):
10,240 MB (6 vCPUs) is bench.vcpu_scaling's own projection (the per-pair time at 2 vCPUs' efficiency, each run
in flight on a whole vCPU); fan-out at 1,769 MB splits into n = min(1 + workers, ceil(T1 / target), passages)
shards and takes T1 / n plus the invoke overhead bench.fanout measured (warm workers, balanced shards).

Cost: arm64's $0.0000133334 per GB-s plus $0.20 per million invocations, the p50 as the billed duration. With
fan-out every shard is an invocation: the coordinator is billed for the whole answer, each worker for its shard.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

PRICE_PER_GB_SECOND = 0.0000133334
PRICE_PER_MILLION_INVOKES = 0.20
MEMORY_MB = {1: 1769, 2: 3538, 6: 10240}


def usd_per_million(seconds: float, memory_mb: int, invokes: int = 1) -> float:
    return seconds * memory_mb / 1024 * PRICE_PER_GB_SECOND * 1e6 + PRICE_PER_MILLION_INVOKES * invokes


def fanout_projection(
    one_vcpu_ms: float, passages: int, target_ms: float, workers: int, overhead_ms: float
) -> tuple[int, float, float]:
    """(shards, latency ms, billed ms over every invocation) at 1,769 MB for one request."""
    shards = max(1, min(1 + workers, math.ceil(one_vcpu_ms / target_ms), passages))
    if shards == 1:
        return 1, one_vcpu_ms, one_vcpu_ms
    latency = one_vcpu_ms / shards + overhead_ms
    return shards, latency, latency + (shards - 1) * one_vcpu_ms / shards


def rows(scaling: dict[str, Any], args: argparse.Namespace, overhead_ms: float) -> list[str]:
    sizes = sorted(scaling, key=int)
    head = " | ".join(f"p50 @{size} (ms)" for size in sizes)
    cost = " | ".join(f"USD / M @{size}" for size in sizes)
    lines = [f"| Lambda memory | {head} | {cost} |", "|---|" + "---:|" * (2 * len(sizes))]

    def line(label: str, latencies: list[float], costs: list[float]) -> str:
        values = [f"{value:,.0f}" for value in latencies] + [f"{value:,.2f}" for value in costs]
        return f"| {label} | " + " | ".join(values) + " |"

    one = [scaling[size]["p50_ms"]["1"] for size in sizes]
    two = [scaling[size]["p50_ms"]["2"] for size in sizes]
    six = [scaling[size]["projected_p50_ms"]["6"] for size in sizes]
    lines.append(line("1,769 MB (1 vCPU)", one, [usd_per_million(ms / 1000, 1769) for ms in one]))
    lines.append(line("3,538 MB (2 vCPUs)", two, [usd_per_million(ms / 1000, 3538) for ms in two]))
    lines.append(
        line("10,240 MB (6 vCPUs), projected", six, [usd_per_million(ms / 1000, 10240) for ms in six])
    )
    projected = [
        fanout_projection(ms, int(size), args.target_ms, args.workers, overhead_ms)
        for size, ms in zip(sizes, one, strict=True)
    ]
    shards = "/".join(str(count) for count, _, _ in projected)
    lines.append(
        line(
            f"1,769 MB + fan-out ({shards} shards), projected",
            [latency for _, latency, _ in projected],
            [usd_per_million(billed / 1000, 1769, count) for count, _, billed in projected],
        )
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scaling_json", type=Path, nargs="+", help="bench.vcpu_scaling --json outputs")
    parser.add_argument("--fanout", type=Path, required=True, help="bench.fanout --json output")
    parser.add_argument("--target-ms", type=float, default=250.0, help="FANOUT_TARGET_MS of the projection")
    parser.add_argument("--workers", type=int, default=9, help="FANOUT_MAX_WORKERS of the projection")
    args = parser.parse_args(argv)
    overhead_ms = json.loads(args.fanout.read_text())["invoke_overhead_ms"]
    print(
        f"Fan-out projected with FANOUT_TARGET_MS={args.target_ms:g}, FANOUT_MAX_WORKERS={args.workers}, "
        f"invoke overhead {overhead_ms:.0f} ms (measured by bench.fanout).\n"
    )
    for path in args.scaling_json:
        for model, result in json.loads(path.read_text())["models"].items():
            print(f"### `{model}`\n")
            print("\n".join(rows(result["scaling"], args, overhead_ms)))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
