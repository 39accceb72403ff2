"""Latency per vCPU setting, and what it implies for Lambda memory size and cost.

    .venv/bin/python -m bench.memory_table [--passages 50] [--trials 30]

Measured here: warm p50 of one request with the engine's default for 1 vCPU (one run at a time) and for
2 vCPUs (two runs in flight, ENGINE_PARALLEL_RUNS=2), interleaved. Lambda gives a full vCPU
at 1769 MB and two at 3538 MB; below 1769 MB the CPU share shrinks in proportion, so those rows scale the
1-thread time by 1769 / memory (an estimate, marked as such). Cost uses Lambda's arm64 price.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from reranker.engine import CrossEncoder, EngineOptions  # noqa: E402
from tools.fixture_model.corpus import CorpusGenerator  # noqa: E402

ARM64_PRICE_PER_GB_SECOND = 0.0000133334  # USD, first pricing tier
PRICE_PER_MILLION_REQUESTS = 0.20  # USD
ONE_VCPU_MB = 1769
# (memory MB, threads, measured or scaled from the 1-thread time)
ROWS = ((1024, 1), (1769, 1), (3538, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, default=REPO / ".fixtures" / "int8" / "ms-marco-TinyBERT-L-2-v2"
    )
    parser.add_argument("--passages", type=int, default=50)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args(argv)
    encoders = {
        vcpus: CrossEncoder.load(args.model_dir, EngineOptions(parallel_runs=vcpus)) for vcpus in (1, 2)
    }
    requests = [CorpusGenerator(seed=21).request(args.passages) for _ in range(args.trials)]
    timings: dict[int, list[float]] = {1: [], 2: []}
    for encoder in encoders.values():
        encoder.score(requests[0].query, requests[0].passages)
    for trial, request in enumerate(requests):
        for threads in (1, 2) if trial % 2 else (2, 1):
            started = time.perf_counter()
            encoders[threads].score(request.query, request.passages)
            timings[threads].append(time.perf_counter() - started)
    p50 = {threads: statistics.median(values) * 1000 for threads, values in timings.items()}
    print(
        f"{args.passages} passages per request, int8 nano fixture, warm p50 over {args.trials} interleaved trials"
    )
    print(
        "| Lambda memory | vCPUs (runs in flight) | latency p50 (ms) | billed GB-s per request | USD per million requests |"
    )
    print("|---:|---:|---:|---:|---:|")
    for memory, threads in ROWS:
        latency = p50[threads] * (ONE_VCPU_MB / memory if memory < ONE_VCPU_MB else 1.0)
        estimated = " (scaled)" if memory < ONE_VCPU_MB else ""
        gb_seconds = memory / 1024 * max(1.0, latency) / 1000
        cost = gb_seconds * ARM64_PRICE_PER_GB_SECOND * 1e6 + PRICE_PER_MILLION_REQUESTS
        print(f"| {memory} | {threads} | {latency:.1f}{estimated} | {gb_seconds:.5f} | {cost:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
