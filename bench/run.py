"""Benchmark the engine against FlashRank and the zero-padding lower bound, on one vCPU and on two.

    ./dev bench                       the full run (a few minutes on 2 cores)
    ./dev bench --quick               fewer trials, for a smoke check
    ./dev bench --plot --json         also write bench/out/latency.png and bench/out/results.json

One vCPU (the template's default, 1769 MB) is the headline: the measuring process is pinned to one core
(os.sched_setaffinity, before onnxruntime starts any thread), ours runs one pair at a time
(ENGINE_PARALLEL_RUNS=1) and the bound uses one intra-op thread. Two vCPUs (3538 MB): two cores, two runs
in flight, the bound with two intra-op threads. Each setting runs in its own fresh process; FlashRank keeps
onnxruntime's defaults (which follow the process's CPU affinity). The engine is measured directly, so no
score cache is involved.

Warm latency: for each request size the three contenders run the same request in rotating order, so
machine noise hits them alike. The lower bound is the pure onnxruntime time of every pair run alone, already
tokenized, with no padding at all ("bound+tokenize" adds the tokenization every reranker does). Cold start
and peak RSS are measured in fresh processes pinned to one core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from flashrank import Ranker, RerankRequest  # noqa: E402

from bench.pinned import child_environment, pin_to_cores, run_pinned  # noqa: E402
from reranker.engine import CrossEncoder, EngineOptions  # noqa: E402
from tools.fixture_model.corpus import CorpusGenerator, SyntheticRequest  # noqa: E402

MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
SIZES = (10, 20, 50, 100)
VCPU_SETTINGS = (1, 2)
# Between contenders: onnxruntime's intra-op threads spin for a while after a run; let them go idle so the
# next contender does not pay for the previous one's spinning.
PAUSE_SECONDS = 0.02


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class LowerBound:
    """Each pair alone through onnxruntime, pre-tokenized: no padding, no Python around it."""

    def __init__(self, encoder: CrossEncoder) -> None:
        self._encoder = encoder

    def prepare(self, request: SyntheticRequest) -> list[dict[str, np.ndarray]]:
        runs = self._encoder.tokenization.encode(request.query, request.passages, "truncate").runs
        return [self._encoder.runner.feed([run]) for run in runs]

    def run(self, feeds: list[dict[str, np.ndarray]]) -> float:
        session = self._encoder.runner.session
        started = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        return time.perf_counter() - started


def warm_latency(
    model_dir: Path,
    threads: int,
    parallel_runs: int,
    bound_threads: int,
    trials: int,
    seed: int,
    sizes: tuple[int, ...] = SIZES,
) -> dict[int, dict[str, list[float]]]:
    encoder = CrossEncoder.load(
        model_dir, EngineOptions(intra_op_threads=threads, parallel_runs=parallel_runs)
    )
    ranker = Ranker(model_name=MODEL_NAME, cache_dir=str(model_dir.parent), log_level="WARNING")
    bound = LowerBound(CrossEncoder.load(model_dir, EngineOptions(intra_op_threads=bound_threads)))
    corpus = CorpusGenerator(seed=seed)
    results: dict[int, dict[str, list[float]]] = {}
    for size in sizes:
        timings: dict[str, list[float]] = {
            "ours": [],
            "flashrank": [],
            "lower_bound": [],
            "bound_with_tokenize": [],
        }
        requests = [corpus.request(size) for _ in range(trials)]

        def ours(request: SyntheticRequest) -> float:
            started = time.perf_counter()
            encoder.score(request.query, request.passages)
            return time.perf_counter() - started

        def flashrank(request: SyntheticRequest) -> float:
            passages = [{"id": index, "text": text} for index, text in enumerate(request.passages)]
            started = time.perf_counter()
            ranker.rerank(RerankRequest(query=request.query, passages=passages))
            return time.perf_counter() - started

        def lower_bound(request: SyntheticRequest, timings: dict[str, list[float]] = timings) -> float:
            started = time.perf_counter()
            feeds = bound.prepare(request)
            tokenize = time.perf_counter() - started
            run = bound.run(feeds)
            timings["bound_with_tokenize"].append(tokenize + run)
            return run

        contenders: list[tuple[str, Callable[[SyntheticRequest], float]]] = [
            ("ours", ours),
            ("flashrank", flashrank),
            ("lower_bound", lower_bound),
        ]
        for _, contender in contenders:  # warm-up: arenas, caches, thread pools
            contender(requests[0])
        timings["bound_with_tokenize"].clear()
        for trial, request in enumerate(requests):
            rotation = contenders[trial % 3 :] + contenders[: trial % 3]
            for name, contender in rotation:
                time.sleep(PAUSE_SECONDS)
                timings[name].append(contender(request))
        results[size] = timings
    return results


COLD_START_OURS = """
import time, sys, json
started = time.perf_counter()
sys.path[:0] = [{handler!r}, {repo!r}]
from pathlib import Path
from reranker.engine import CrossEncoder, EngineOptions
encoder = CrossEncoder.load(Path({model!r}), EngineOptions(intra_op_threads={threads}, parallel_runs={parallel}))
from tools.fixture_model.corpus import CorpusGenerator
request = CorpusGenerator(seed=1).request(10)
loaded = time.perf_counter()
encoder.score(request.query, request.passages)
print(json.dumps({{"total": time.perf_counter() - started, "first_answer": time.perf_counter() - loaded}}))
"""

COLD_START_FLASHRANK = """
import time, sys, json
started = time.perf_counter()
sys.path[:0] = [{repo!r}]
from flashrank import Ranker, RerankRequest
ranker = Ranker(model_name={name!r}, cache_dir={cache!r}, log_level="WARNING")
from tools.fixture_model.corpus import CorpusGenerator
request = CorpusGenerator(seed=1).request(10)
loaded = time.perf_counter()
ranker.rerank(RerankRequest(query=request.query, passages=[{{"id": i, "text": t}} for i, t in enumerate(request.passages)]))
print(json.dumps({{"total": time.perf_counter() - started, "first_answer": time.perf_counter() - loaded}}))
"""

PEAK_RSS = """
import sys, json
sys.path[:0] = [{handler!r}, {repo!r}]
from pathlib import Path
from tools.fixture_model.corpus import CorpusGenerator
requests = CorpusGenerator(seed=3).requests(20, min_passages=100, max_passages=100)
def peak_mib():
    # VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss across fork + exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
if {flashrank!r}:
    from flashrank import Ranker, RerankRequest
    ranker = Ranker(model_name={name!r}, cache_dir={cache!r}, log_level="WARNING")
    def rerank(request):
        ranker.rerank(RerankRequest(query=request.query, passages=[{{"id": i, "text": t}} for i, t in enumerate(request.passages)]))
else:
    from reranker.engine import CrossEncoder, EngineOptions
    encoder = CrossEncoder.load(Path({model!r}), EngineOptions(intra_op_threads={threads}, parallel_runs={parallel}))
    def rerank(request):
        encoder.score(request.query, request.passages)
loaded = peak_mib()
rerank(requests[0])
after_one = peak_mib()
for request in requests[1:]:
    rerank(request)
print(json.dumps({{"loaded": loaded, "after_1": after_one, "after_20": peak_mib()}}))
"""


def fresh_process(code: str) -> dict[str, float]:
    """Run code in a fresh interpreter pinned to one core (one vCPU); its last line is a JSON object."""
    return run_pinned(code, vcpus=1)


def child_values(model_dir: Path, threads: int, parallel: int) -> dict[str, object]:
    """What the fresh-process scripts are formatted with."""
    return {
        "parallel": parallel,
        "handler": str(REPO / "handler"),
        "repo": str(REPO),
        "model": str(model_dir),
        "threads": threads,
        "name": MODEL_NAME,
        "cache": str(model_dir.parent),
    }


def cold_starts(model_dir: Path, threads: int, parallel: int, runs: int) -> dict[str, list[dict[str, float]]]:
    values = child_values(model_dir, threads, parallel)
    results: dict[str, list[dict[str, float]]] = {"ours": [], "flashrank": []}
    for _ in range(runs):
        results["ours"].append(fresh_process(COLD_START_OURS.format(**values)))
        results["flashrank"].append(fresh_process(COLD_START_FLASHRANK.format(**values)))
    return results


def peak_rss(model_dir: Path, threads: int, parallel: int) -> dict[str, dict[str, float]]:
    values = child_values(model_dir, threads, parallel)
    return {
        "ours": fresh_process(PEAK_RSS.format(flashrank=False, **values)),
        "flashrank": fresh_process(PEAK_RSS.format(flashrank=True, **values)),
    }


SETTING_NAMES = {1: "One vCPU (1769 MB)", 2: "Two vCPUs (3538 MB)"}


def latency_table(timings_by_size: dict[int, dict[str, list[float]]]) -> list[str]:
    lines = [
        "| passages | ours p50 | ours p95 | FlashRank p50 | FlashRank p95 | bound p50 | bound+tokenize p50 "
        "| ours/bound | ours/(bound+tokenize) | FlashRank/bound | FlashRank/ours |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, timings in timings_by_size.items():
        p50 = {name: percentile(values, 50) * 1000 for name, values in timings.items()}
        p95 = {name: percentile(values, 95) * 1000 for name, values in timings.items()}
        lines.append(
            f"| {size} | {p50['ours']:.1f} | {p95['ours']:.1f} | {p50['flashrank']:.1f} | {p95['flashrank']:.1f} "
            f"| {p50['lower_bound']:.1f} | {p50['bound_with_tokenize']:.1f} | {p50['ours'] / p50['lower_bound']:.2f}x "
            f"| {p50['ours'] / p50['bound_with_tokenize']:.2f}x "
            f"| {p50['flashrank'] / p50['lower_bound']:.2f}x | {p50['flashrank'] / p50['ours']:.2f}x |"
        )
    return lines


def report(
    latency: dict[int, dict[int, dict[str, list[float]]]],
    cold: dict[str, list[dict[str, float]]],
    rss: dict[str, dict[str, float]],
) -> str:
    lines: list[str] = []
    for vcpus, timings_by_size in latency.items():
        name = SETTING_NAMES.get(vcpus, f"{vcpus} vCPUs")
        lines += [
            f"{name}: warm latency, ms (int8 nano fixture, MS MARCO-like mix; ours: {vcpus} run(s) in flight x "
            f"1 intra-op thread; bound: sequential runs x {vcpus} intra-op thread(s); FlashRank: onnxruntime's "
            f"defaults on {vcpus} core(s))",
            *latency_table(timings_by_size),
            "",
        ]
    ours_cold = statistics.median(run["total"] for run in cold["ours"]) * 1000
    flash_cold = statistics.median(run["total"] for run in cold["flashrank"]) * 1000
    lines += [
        f"Cold start on one core, fresh process: import + model load + first 10-passage answer, median of "
        f"{len(cold['ours'])}",
        "| | ours | FlashRank | ours/FlashRank |",
        "|---|---:|---:|---:|",
        f"| ms | {ours_cold:.0f} | {flash_cold:.0f} | {ours_cold / flash_cold:.2f}x |",
        "",
        "Peak RSS on one core, MiB, fresh process, requests of 100 passages",
        "| | after load | after 1 | after 20 |",
        "|---|---:|---:|---:|",
    ]
    for name in ("ours", "flashrank"):
        values = rss[name]
        lines.append(
            f"| {name} | {values['loaded']:.0f} | {values['after_1']:.0f} | {values['after_20']:.0f} |"
        )
    return "\n".join(lines)


def plot(latency: dict[int, dict[int, dict[str, list[float]]]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(latency), figsize=(6 * len(latency), 4), squeeze=False)
    for axis, (vcpus, timings_by_size) in zip(axes[0], latency.items(), strict=True):
        for name, label in (
            ("flashrank", "FlashRank"),
            ("ours", "ours"),
            ("lower_bound", "zero-padding bound"),
        ):
            medians = [percentile(timings_by_size[size][name], 50) * 1000 for size in timings_by_size]
            axis.plot(list(timings_by_size), medians, marker="o", label=label)
        axis.set_xlabel("passages per request")
        axis.set_ylabel("warm p50 latency (ms)")
        axis.set_title(f"{SETTING_NAMES.get(vcpus, vcpus)}, int8 nano fixture")
        axis.grid(alpha=0.3)
        axis.legend()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def measure_setting(vcpus: int, args: argparse.Namespace, trials: int) -> dict[int, dict[str, list[float]]]:
    """Warm latency for one vCPU setting, in a fresh process pinned to that many cores."""
    command = [
        sys.executable, "-m", "bench.run", "--worker-vcpus", str(vcpus), "--trials", str(trials),
        "--seed", str(args.seed), "--model-dir", str(args.model_dir),
        "--sizes", ",".join(str(size) for size in args.sizes),
    ]  # fmt: skip
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, env=child_environment(), cwd=REPO, timeout=3600
    )
    loaded: dict[str, dict[str, list[float]]] = json.loads(output.stdout.strip().splitlines()[-1])
    return {int(size): timings for size, timings in loaded.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO / ".fixtures" / "int8" / MODEL_NAME,
        help="a FlashRank model directory (default: the generated TinyBERT-L-2 fixture)",
    )
    parser.add_argument("--trials", type=int, default=30, help="warm trials per request size (default 30)")
    parser.add_argument(
        "--cold-runs", type=int, default=7, help="fresh processes per cold-start measurement (default 7)"
    )
    parser.add_argument("--quick", action="store_true", help="5 trials, 3 cold runs")
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the generated warm requests (default 42)"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=SIZES,
        help="passages per request, comma-separated (default 10,20,50,100)",
    )
    parser.add_argument(
        "--vcpus",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=VCPU_SETTINGS,
        help="vCPU settings to measure, comma-separated (default 1,2)",
    )
    parser.add_argument("--worker-vcpus", type=int, help=argparse.SUPPRESS)
    # Without FILE, bench/out/ (git-ignored): a run never overwrites a tracked file unless told to.
    parser.add_argument(
        "--plot",
        type=Path,
        nargs="?",
        const=REPO / "bench" / "out" / "latency.png",
        metavar="FILE",
        help="write a latency plot (PNG; default FILE: bench/out/latency.png)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        nargs="?",
        const=REPO / "bench" / "out" / "results.json",
        metavar="FILE",
        help="write the results as JSON (default FILE: bench/out/results.json)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trials, cold_runs = (5, 3) if args.quick else (args.trials, args.cold_runs)
    if args.worker_vcpus is not None:  # the child of measure_setting
        vcpus = args.worker_vcpus
        pin_to_cores(vcpus)
        latency = warm_latency(args.model_dir, 1, vcpus, vcpus, trials, args.seed, args.sizes)
        print(json.dumps(latency))
        return 0
    latency_by_setting = {vcpus: measure_setting(vcpus, args, trials) for vcpus in args.vcpus}
    cold = cold_starts(args.model_dir, 1, 1, cold_runs)
    rss = peak_rss(args.model_dir, 1, 1)
    print(report(latency_by_setting, cold, rss))
    if args.plot:
        plot(latency_by_setting, args.plot)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {"latency": latency_by_setting, "cold": cold, "rss": rss}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
