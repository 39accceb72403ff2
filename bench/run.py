"""Benchmark the engine against FlashRank, by passage-length distribution, on one vCPU and on two.

    ./dev bench                                   every distribution, 50 passages, 1 and 2 vCPUs (needs root)
    ./dev bench --quick                           a smoke check: 3 requests, one process per contender
    ./dev bench --distributions short,msmarco --sizes 10,50 --model-dir DIR
    ./dev bench --plot --json                     also write bench/out/latency.png and bench/out/results.json

N vCPUs is a CPU quota of N x 100 ms per 100 ms on the child's own cgroup (bench/cpu_quota.py), as Lambda
enforces vCPUs: the child sees every core, so onnxruntime's intra-op worker threads cannot run outside the
quota the way they leave an affinity mask. Creating the cgroups needs root.

Each contender runs in its own fresh process per vCPU count and repeat (bench/contenders.py says what each
one is): ours, FlashRank default, FlashRank with one intra-op thread, the bound (each pair alone,
pre-tokenized, unpadded, through the original graph: onnxruntime time only) and the batched bound (exact
padded batches through the engine's batched session, the fastest of --bound-batch-sizes; "n/a" when the
engine has none) and the batched floor (the same batches through the original graph: not exact, the least
any batching could take). Each process warms
up, then times --trials requests of each distribution (tools/fixture_model/length_mix.py) and size; each
setting runs --repeats times and the better median is kept. The engine is called directly: no score cache.

Cold start and peak RSS (bench/footprint.py) follow, in fresh processes under a 1-vCPU quota.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import footprint
from bench.contenders import CONTENDERS
from bench.cpu_quota import run_under_quota
from bench.length_table import COLUMNS, SETTING_NAMES, Repeats, best_medians, report
from tools.fixture_model.length_mix import LENGTH_MIXES

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
SIZES = (50,)
VCPU_SETTINGS = (1, 2)
# The batched bound's batch sizes, each timed, the fastest kept: the engine's ENGINE_BATCH_SIZE default, twice
# that, and the whole request of 50 in one batch.
BOUND_BATCH_SIZES = (8, 16, 50)
QUOTA_TOLERANCE = 0.10


def _integers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def _names(known: tuple[str, ...] | list[str], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="./dev bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO / ".fixtures" / "int8" / MODEL_NAME,
        help="a model folder in FlashRank's layout, named as FlashRank names the model "
        "(default: the generated TinyBERT-L-2 fixture)",
    )
    parser.add_argument(
        "--distributions",
        type=_names(tuple(LENGTH_MIXES), "distribution"),
        default=list(LENGTH_MIXES),
        help=f"passage-length distributions, comma-separated (default: all of {','.join(LENGTH_MIXES)})",
    )
    parser.add_argument(
        "--sizes", type=_integers, default=SIZES, help="passages per request, comma-separated (default 50)"
    )
    parser.add_argument(
        "--contenders",
        type=_names(CONTENDERS, "contender"),
        default=list(CONTENDERS),
        help=f"comma-separated (default: all of {','.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--vcpus", type=_integers, default=VCPU_SETTINGS, help="vCPU quotas, comma-separated (default 1,2)"
    )
    parser.add_argument(
        "--trials", type=int, default=12, help="timed requests per distribution and size (12)"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="fresh processes per contender and vCPU count (2)"
    )
    parser.add_argument(
        "--cold-runs", type=int, default=7, help="fresh processes per cold-start measurement (default 7)"
    )
    parser.add_argument("--skip-footprint", action="store_true", help="no cold start or peak RSS")
    parser.add_argument(
        "--bound-batch-sizes",
        type=_integers,
        default=BOUND_BATCH_SIZES,
        help="batch sizes the batched bound tries, comma-separated; the fastest is kept (default 8,16,50)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke check: 3 requests, 1 repeat, 1 cold run"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated requests (default 42)")
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
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.repeats, args.cold_runs = 3, 1, 1
    for name in ("trials", "repeats", "cold_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.bound_batch_sizes) < 1 or min(args.sizes) < 1:
        parser.error("--sizes and --bound-batch-sizes must be at least 1")
    return args


def check_quota() -> float:
    """CPUs two busy threads use under a 1-vCPU quota; exits when the quota is not enforced."""
    from bench.vcpu_scaling import run_child

    used = float(run_child({"kind": "quota_check", "seconds": 1.0}, 1)["cpu_per_wall"])
    if used > 1 + QUOTA_TOLERANCE:
        raise SystemExit(f"the 1-vCPU quota is not enforced: two busy threads used {used:.2f} CPUs")
    return used


def measure_latency(args: argparse.Namespace) -> dict[int, dict[str, Repeats]]:
    """vCPUs -> contender -> one child result per repeat; the order rotates so noise hits all alike."""
    latency: dict[int, dict[str, Repeats]] = {
        vcpus: {name: [] for name in args.contenders} for vcpus in args.vcpus
    }
    contenders = list(args.contenders)
    for repeat in range(args.repeats):
        order = contenders[repeat % len(contenders) :] + contenders[: repeat % len(contenders)]
        for vcpus in args.vcpus if repeat % 2 == 0 else args.vcpus[::-1]:
            for name in order:
                job = {
                    "contender": name,
                    "model": str(args.model_dir.resolve()),
                    "vcpus": vcpus,
                    "distributions": args.distributions,
                    "sizes": list(args.sizes),
                    "trials": args.trials,
                    "seed": args.seed,
                    "batch_sizes": list(args.bound_batch_sizes),
                }
                result = run_under_quota(["-m", "bench.contenders", json.dumps(job)], vcpus=vcpus, cwd=REPO)
                latency[vcpus][name].append(result)
    return latency


def plot(medians: dict[int, dict[str, dict[str, dict[str, float | None]]]], size: int, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(medians), figsize=(7 * len(medians), 4), squeeze=False)
    for axis, (vcpus, by_distribution) in zip(axes[0], medians.items(), strict=True):
        names = list(by_distribution)
        contenders = [name for name in COLUMNS if name in by_distribution[names[0]][str(size)]]
        width = 0.8 / len(contenders)
        for index, contender in enumerate(contenders):
            values = [by_distribution[name][str(size)][contender] or 0.0 for name in names]
            axis.bar([x + index * width for x in range(len(names))], values, width, label=COLUMNS[contender])
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=20)
        axis.set_ylabel(f"warm p50 latency, {size} passages (ms)")
        axis.set_title(SETTING_NAMES.get(vcpus, f"{vcpus} vCPUs"))
        axis.grid(alpha=0.3, axis="y")
        axis.legend()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.model_dir / "tokenizer.json").is_file():
        raise SystemExit(f"{args.model_dir} is not a model folder in FlashRank's layout (no tokenizer.json)")
    used = check_quota()
    latency = measure_latency(args)
    lines = [f"Quota check: two busy threads under a 1-vCPU quota used {used:.2f} CPUs.", ""]
    lines += report(
        latency, args.distributions, list(args.sizes), model=args.model_dir.name, trials=args.trials
    )
    payload: dict[str, Any] = {
        "settings": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
            if key not in ("plot", "json")
        },
        "quota_check_cpus_used_at_1_vcpu": used,
        "best_median_ms": best_medians(latency, args.distributions, list(args.sizes)),
        "latency": latency,
    }
    if not args.skip_footprint:
        cold = footprint.cold_starts(args.model_dir, args.cold_runs)
        rss = footprint.peak_rss(args.model_dir)
        lines += footprint.report(cold, rss)
        payload |= {"cold": cold, "rss": rss}
    print("\n".join(lines))
    if args.plot:
        plot(payload["best_median_ms"], args.sizes[0], args.plot)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
