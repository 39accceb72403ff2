"""Per-model figures for the Models table of docs/benchmarks.md, ours beside FlashRank, on one vCPU.

    .venv/bin/python -m bench.models DIR [DIR ...] [--trials 20] [--cold-runs 5]

Each DIR is a model folder in FlashRank's layout named after the model (e.g. a full-size same-shape fixture
of rank-T5-flan, or .fixtures/int8/ms-marco-TinyBERT-L-2-v2). For every model, ours and FlashRank each run
in --cold-runs fresh interpreters pinned to one core (os.sched_setaffinity before onnxruntime starts; ours
with one run in flight and one intra-op thread, no score cache), interleaved so machine noise hits both
alike. Each process measures:

- cold start: spawn -> import -> model load -> first answer to a 10-passage request (median over processes);
- warm p50 at 10 and 50 passages (MS MARCO-like requests, all warm samples of all processes pooled);
- peak RSS (VmHWM of the process after all of that; max over processes).

Prints ready rows in that table's columns: archive size (layer/build_layer.py's pins),
unpacked size (the folder), where it can live (a layer if it fits beside the function package's budget),
the /tmp it needs from S3 (archive + unpacked + 10 %, in Lambda's ephemeral storage steps), the memory it
wants (our peak RSS + 64 MB, rounded up to 64 MB; 1769 MB buys the full vCPU), and the measured pairs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.pinned import run_pinned

REPO = Path(__file__).resolve().parent.parent
SIZES = (10, 50)
# Memory a model wants: its peak RSS plus headroom for the runtime and request buffers, in Lambda's steps.
HEADROOM_MB = 64
MEMORY_STEP_MB = 64

CHILD = """
import json, os, sys, time
spawned = float(os.environ["BENCH_SPAWNED_AT"])
sys.path[:0] = [{handler!r}, {repo!r}]
from pathlib import Path
model_dir = Path({model!r})
if {flashrank!r}:
    from flashrank import Ranker, RerankRequest
    ranker = Ranker(model_name=model_dir.name, cache_dir=str(model_dir.parent), log_level="WARNING")
    def rerank(request):
        passages = [{{"id": i, "text": t}} for i, t in enumerate(request.passages)]
        ranker.rerank(RerankRequest(query=request.query, passages=passages))
else:
    from reranker.engine import CrossEncoder, EngineOptions
    encoder = CrossEncoder.load(model_dir, EngineOptions(intra_op_threads=1, parallel_runs=1))
    def rerank(request):
        encoder.score(request.query, request.passages)
from tools.fixture_model.corpus import CorpusGenerator
corpus = CorpusGenerator(seed={seed})
rerank(corpus.request(10))
cold = time.time() - spawned
warm = {{}}
for size in {sizes!r}:
    requests = [corpus.request(size) for _ in range({trials})]
    rerank(requests[0])
    timings = []
    for request in requests:
        started = time.perf_counter()
        rerank(request)
        timings.append(time.perf_counter() - started)
    warm[size] = timings
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"cold": cold, "warm": warm, "peak_kib": peak}}))
"""


EPHEMERAL_STEPS_MB = (512, 1024, 2048, 4096, 8192, 10240)
TMP_HEADROOM = 1.1  # the cache's manifest and whatever else the function keeps in /tmp


def load_build_layer() -> Any:
    spec = importlib.util.spec_from_file_location("build_layer", REPO / "layer" / "build_layer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_layer"] = module
    spec.loader.exec_module(module)
    return module


def run_child(model_dir: Path, flashrank: bool, trials: int, seed: int) -> dict[str, Any]:
    code = CHILD.format(
        handler=str(REPO / "handler"),
        repo=str(REPO),
        model=str(model_dir.resolve()),
        flashrank=flashrank,
        seed=seed,
        sizes=SIZES,
        trials=trials,
    )
    return run_pinned(code, vcpus=1, timeout=1800, environment={"BENCH_SPAWNED_AT": repr(time.time())})


def measure(model_dir: Path, trials: int, cold_runs: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "flashrank": []}
    per_process = max(1, math.ceil(trials / cold_runs))
    for run in range(cold_runs + 1):  # run 0 warms the page cache and is dropped
        order = ("ours", "flashrank") if run % 2 else ("flashrank", "ours")
        for name in order:
            result = run_child(model_dir, name == "flashrank", per_process, seed=run)
            if run:
                samples[name].append(result)
    summary: dict[str, dict[str, float]] = {}
    for name, results in samples.items():
        figures = {
            "cold_ms": statistics.median(result["cold"] for result in results) * 1000,
            "peak_rss_mib": max(result["peak_kib"] for result in results) / 1024,
        }
        for size in SIZES:
            pooled = [value for result in results for value in result["warm"][str(size)]]
            figures[f"p50_{size}_ms"] = statistics.median(pooled) * 1000
        summary[name] = figures
    return summary


def unpacked_bytes(model_dir: Path) -> int:
    return sum(path.stat().st_size for path in model_dir.iterdir() if path.is_file())


def memory_wanted_mb(peak_rss_mib: float) -> int:
    return int(math.ceil((peak_rss_mib * 1.048576 + HEADROOM_MB) / MEMORY_STEP_MB) * MEMORY_STEP_MB)


def placement(model_dir: Path, build_layer: Any) -> tuple[str, str, str, str]:
    """archive MB, unpacked MB, where it can live, /tmp it needs from S3 (as the Models table says)."""
    pin = build_layer.PINNED_ARCHIVES.get(model_dir.name)
    unpacked = unpacked_bytes(model_dir)
    archive = pin.size if pin is not None else unpacked  # an archive is never much smaller than int8 weights
    share = build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES - build_layer.FUNCTION_PACKAGE_BUDGET_BYTES
    where = "layer or S3" if unpacked + 65 <= share else "S3"
    needed_mb = (archive + unpacked) * TMP_HEADROOM / 1e6
    tmp = next((str(step) for step in EPHEMERAL_STEPS_MB if step >= needed_mb), "too big")
    archive_text = f"{pin.size / 1e6:.1f}" if pin is not None else "-"
    return archive_text, f"{unpacked / 1e6:.1f}", where, tmp


def row(model_dir: Path, summary: dict[str, dict[str, float]], build_layer: Any) -> str:
    ours, theirs = summary["ours"], summary["flashrank"]

    def pair(key: str, digits: int = 0) -> str:
        return f"{ours[key]:.{digits}f} / {theirs[key]:.{digits}f}"

    archive, unpacked, where, tmp = placement(model_dir, build_layer)
    return (
        f"| `{model_dir.name}` | {archive} | {unpacked} | {where} | {tmp} "
        f"| 1769 for CPU; fits in {memory_wanted_mb(ours['peak_rss_mib'])} | {pair('peak_rss_mib')} "
        f"| {pair('p50_10_ms', 1)} | {pair('p50_50_ms', 1)} | {pair('cold_ms')} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dirs", type=Path, nargs="+", help="model folders named after the model")
    parser.add_argument("--trials", type=int, default=20, help="warm requests per size, over all processes")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes per contender")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    for model_dir in args.model_dirs:
        if not (model_dir / "tokenizer.json").is_file():
            parser.error(f"{model_dir} is not a model folder in FlashRank's layout")
    build_layer = load_build_layer()
    results = {}
    rows = []
    for model_dir in args.model_dirs:
        summary = measure(model_dir, args.trials, args.cold_runs)
        results[model_dir.name] = summary
        rows.append(row(model_dir, summary, build_layer))
    print(
        "One vCPU (process pinned to one core), ours / FlashRank; memory wanted = our peak RSS + "
        f"{HEADROOM_MB} MB, rounded up to {MEMORY_STEP_MB} MB"
    )
    print(
        "| model | archive (MB) | unpacked (MB) | where it can live | `/tmp` from S3 | memory it wants (MB) "
        "| peak RSS ours / FlashRank (MiB) | p50 @10 ours / FlashRank (ms) | p50 @50 ours / FlashRank (ms) "
        "| cold start ours / FlashRank (ms) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
