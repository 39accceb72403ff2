"""Every vCPU: latency at 1 and 2 vCPUs (a CPU quota, as Lambda enforces it), and the tail experiment.

    .venv/bin/python -m tools.fixture_model --shapes full --out DIR      # full-size same-shape models
    .venv/bin/python -m bench.vcpu_scaling DIR/int8/ms-marco-MiniLM-L-12-v2 DIR/int8/ms-marco-MultiBERT-L-12 \\
        [--trials 10] [--rounds 3] [--sizes 10 50] [--tail-sizes 1 3 50] [--json bench/out/vcpu_scaling.json]

Needs root (it makes cgroups: bench/cpu_quota.py) and a quiet machine with at least two cores. Each
measurement runs in a fresh interpreter that sees every core and gets N x 100 ms of CPU per 100 ms period.

Scaling: the engine as the function derives it for N vCPUs (ENGINE_PARALLEL_RUNS=N, one intra-op thread,
no tail session), warm p50 of MS MARCO-like requests at each --sizes, in --rounds processes per N
alternating 1 and 2 so machine noise hits both alike. The check: p50 at 2 vCPUs is within 10 % of half the
p50 at 1. Printed beside it, marked projected: 3 to 6 vCPUs from the measured per-pair time, assuming the
2-vCPU efficiency holds and each run in flight gets a whole vCPU.

Tail (at 2 vCPUs): does a pair gain from intra-op threads when a vCPU would otherwise idle?
- one pair alone, pre-tokenized, through a session with 1 intra-op thread and with 2 (spinning on and
  off), rotating order; the logits must be bit-identical across the three;
- the engine with 2 runs in flight, tail off against ENGINE_TAIL_INTRA_OP_THREADS=2, at --tail-sizes (1
  and 3 passages are mostly tail; 50 shows what it costs a long request), scores compared bit for bit.
Turn ENGINE_TAIL_INTRA_OP_THREADS=2 on for a model only if the engine rows gain at the small sizes, lose
nothing at 50, and the scores are identical.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VCPUS = (1, 2)
SIZES = (10, 50)
TAIL_SIZES = (1, 3, 50)
PROJECTED_VCPUS = (3, 4, 5, 6)
TOLERANCE = 0.10
# Between contenders in one process: let onnxruntime's spinning workers of the previous one go idle.
PAUSE_SECONDS = 0.02


# --- the children (fresh interpreters under a CPU quota) ------------------------------------------------------


def _child_imports() -> None:
    sys.path[:0] = [str(REPO / "handler"), str(REPO)]


def child_scaling(job: dict[str, Any]) -> dict[str, Any]:
    """Warm latencies of the engine with ``vcpus`` runs in flight, per request size."""
    _child_imports()
    from reranker.engine import CrossEncoder, EngineOptions
    from tools.fixture_model.corpus import CorpusGenerator

    encoder = CrossEncoder.load(
        Path(job["model"]), EngineOptions(intra_op_threads=1, parallel_runs=job["vcpus"])
    )
    corpus = CorpusGenerator(seed=job["seed"])
    timings: dict[str, list[float]] = {}
    for size in job["sizes"]:
        requests = [corpus.request(size) for _ in range(job["trials"])]
        encoder.score(requests[0].query, requests[0].passages)  # warm-up: arenas, caches, the pool
        samples = []
        for request in requests:
            started = time.perf_counter()
            encoder.score(request.query, request.passages)
            samples.append(time.perf_counter() - started)
        timings[str(size)] = samples
    return {"timings": timings}


def child_tail(job: dict[str, Any]) -> dict[str, Any]:
    """One pair through 1 and 2 intra-op threads; the engine with its tail off and on."""
    _child_imports()
    import numpy as np
    import onnxruntime as ort

    from reranker.engine import CrossEncoder, EngineOptions
    from reranker.model_files import find_onnx_file
    from reranker.onnx_runs import session_options
    from tools.fixture_model.corpus import CorpusGenerator

    model = Path(job["model"])
    model_bytes = find_onnx_file(model).read_bytes()
    sessions = {
        "1 thread": ort.InferenceSession(model_bytes, session_options(1), providers=["CPUExecutionProvider"]),
        "2 threads": ort.InferenceSession(
            model_bytes, session_options(2), providers=["CPUExecutionProvider"]
        ),
        "2 threads, no spinning": ort.InferenceSession(
            model_bytes, session_options(2, allow_spinning=False), providers=["CPUExecutionProvider"]
        ),
    }
    plain = CrossEncoder.load(model, EngineOptions(parallel_runs=2))
    tailed = CrossEncoder.load(model, EngineOptions(parallel_runs=2, tail_intra_op_threads=2))
    corpus = CorpusGenerator(seed=job["seed"])
    pairs = [corpus.request(1) for _ in range(job["trials"] + 1)]
    feeds = [
        plain.runner.feed(plain.tokenization.encode(pair.query, pair.passages, "truncate").runs[:1])
        for pair in pairs
    ]
    pair_timings: dict[str, list[float]] = {name: [] for name in sessions}
    identical = True
    names = list(sessions)
    for trial, feed in enumerate(feeds):
        outputs = []
        for name in names[trial % 3 :] + names[: trial % 3]:
            time.sleep(PAUSE_SECONDS)
            started = time.perf_counter()
            outputs.append(sessions[name].run(None, feed)[0])
            if trial:  # the first pair warms every session up
                pair_timings[name].append(time.perf_counter() - started)
        identical &= all(np.array_equal(outputs[0], output) for output in outputs[1:])
    engines = {"tail off": plain, "tail 2 threads": tailed}
    engine_timings: dict[str, dict[str, list[float]]] = {}
    scores_identical = True
    for size in job["tail_sizes"]:
        requests = [corpus.request(size) for _ in range(job["trials"] + 1)]
        per_engine: dict[str, list[float]] = {name: [] for name in engines}
        for trial, request in enumerate(requests):
            answers = []
            order = list(engines) if trial % 2 else list(engines)[::-1]
            for name in order:
                time.sleep(PAUSE_SECONDS)
                started = time.perf_counter()
                report = engines[name].score(request.query, request.passages, with_logits=True)
                if trial:
                    per_engine[name].append(time.perf_counter() - started)
                answers.append((report.scores, report.logits))
            scores_identical &= answers[0] == answers[1]
        engine_timings[str(size)] = per_engine
    return {
        "pair": pair_timings,
        "pair_tokens": [int(feed["input_ids"].shape[1]) for feed in feeds],
        "pair_logits_identical": bool(identical),
        "engine": engine_timings,
        "engine_scores_identical": bool(scores_identical),
    }


def child_quota_check(job: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per wall second of two busy threads (numpy releases the GIL): about the quota, at most."""
    import threading

    import numpy as np

    matrix = np.ones((256, 256))
    deadline = time.perf_counter() + job["seconds"]

    def busy() -> None:
        while time.perf_counter() < deadline:
            matrix @ matrix

    started, cpu_started = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"cpu_per_wall": (time.process_time() - cpu_started) / (time.perf_counter() - started)}


CHILDREN = {"scaling": child_scaling, "tail": child_tail, "quota_check": child_quota_check}


def child_main(raw: str) -> int:
    job = json.loads(raw)
    print(json.dumps(CHILDREN[job["kind"]](job)))
    return 0


# --- the parent -----------------------------------------------------------------------------------------------


def run_child(job: dict[str, Any], vcpus: float) -> dict[str, Any]:
    from bench.cpu_quota import run_under_quota

    return run_under_quota(["-m", "bench.vcpu_scaling", "--child", json.dumps(job)], vcpus=vcpus, cwd=REPO)


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def measure_scaling(model: Path, sizes: list[int], trials: int, rounds: int) -> dict[str, Any]:
    per_process = max(1, math.ceil(trials / rounds))
    pooled: dict[int, dict[int, list[float]]] = {vcpus: {size: [] for size in sizes} for vcpus in VCPUS}
    for round_ in range(rounds):
        order = VCPUS if round_ % 2 == 0 else VCPUS[::-1]
        for vcpus in order:
            job = {
                "kind": "scaling",
                "model": str(model.resolve()),
                "vcpus": vcpus,
                "sizes": sizes,
                "trials": per_process,
                "seed": round_,
            }
            result = run_child(job, vcpus)
            for size in sizes:
                pooled[vcpus][size] += result["timings"][str(size)]
    figures: dict[str, Any] = {}
    for size in sizes:
        one, two = p50_ms(pooled[1][size]), p50_ms(pooled[2][size])
        half = one / 2
        per_pair = one / size
        efficiency = half / two  # 1.0: two vCPUs halve the time
        figures[str(size)] = {
            "p50_ms": {"1": one, "2": two},
            "half_of_1_ms": half,
            "deviation": two / half - 1,
            "within_tolerance": abs(two / half - 1) <= TOLERANCE,
            "projected_p50_ms": {
                str(vcpus): per_pair * math.ceil(size / vcpus) / efficiency for vcpus in PROJECTED_VCPUS
            },
        }
    return figures


def measure_tail(model: Path, tail_sizes: list[int], trials: int) -> dict[str, Any]:
    job = {
        "kind": "tail",
        "model": str(model.resolve()),
        "tail_sizes": tail_sizes,
        "trials": trials,
        "seed": 7,
    }
    return run_child(job, 2)


def report(name: str, scaling: dict[str, Any], tail: dict[str, Any]) -> list[str]:
    lines = [
        f"## {name}",
        "",
        "| passages | p50 1 vCPU (ms) | p50 2 vCPUs (ms) | half of 1 (ms) | 2 vs half | within 10 % ",
    ]
    lines[-1] += "| projected 3 / 4 / 5 / 6 vCPUs (ms) |"
    lines.append("|---:|---:|---:|---:|---:|---|---|")
    for size, row in scaling.items():
        projected = " / ".join(f"{value:.0f}" for value in row["projected_p50_ms"].values())
        lines.append(
            f"| {size} | {row['p50_ms']['1']:.1f} | {row['p50_ms']['2']:.1f} | {row['half_of_1_ms']:.1f} "
            f"| {row['deviation']:+.1%} | {'yes' if row['within_tolerance'] else 'NO'} | {projected} (projected) |"
        )
    tokens = statistics.median(tail["pair_tokens"])
    lines += ["", f"Tail at 2 vCPUs: one pair alone (median {tokens:.0f} tokens), p50 (ms):", ""]
    lines.append("| " + " | ".join(tail["pair"]) + " | logits identical |")
    lines.append("|" + "---:|" * len(tail["pair"]) + "---|")
    lines.append(
        "| "
        + " | ".join(f"{p50_ms(values):.1f}" for values in tail["pair"].values())
        + f" | {'yes' if tail['pair_logits_identical'] else 'NO'} |"
    )
    lines += [
        "",
        "The engine at 2 vCPUs (2 runs in flight), tail off / ENGINE_TAIL_INTRA_OP_THREADS=2, p50 (ms):",
        "",
    ]
    lines.append("| passages | tail off | tail 2 threads | change |")
    lines.append("|---:|---:|---:|---:|")
    for size, per_engine in tail["engine"].items():
        off, on = p50_ms(per_engine["tail off"]), p50_ms(per_engine["tail 2 threads"])
        lines.append(f"| {size} | {off:.1f} | {on:.1f} | {on / off - 1:+.1%} |")
    lines.append(
        f"\nScores with the tail session bit-identical: {'yes' if tail['engine_scores_identical'] else 'NO'}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dirs", type=Path, nargs="*", help="model folders in FlashRank's layout")
    parser.add_argument(
        "--trials", type=int, default=10, help="warm requests per size and vCPU count (pooled)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per vCPU count, alternating")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--tail-sizes", type=int, nargs="+", default=list(TAIL_SIZES))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    if not args.model_dirs:
        parser.error("give at least one model folder")
    for model_dir in args.model_dirs:
        if not (model_dir / "tokenizer.json").is_file():
            parser.error(f"{model_dir} is not a model folder in FlashRank's layout")
    # Two busy threads under a 1-vCPU quota get one CPU second per second: the quota is enforced.
    used = run_child({"kind": "quota_check", "seconds": 1.0}, 1)["cpu_per_wall"]
    if used > 1 + TOLERANCE:
        raise SystemExit(f"the 1-vCPU quota is not enforced: two busy threads used {used:.2f} CPUs")
    models: dict[str, Any] = {}
    lines = [
        f"Quota check: two busy threads under a 1-vCPU quota used {used:.2f} CPUs.",
        "CPU quota per fresh process (a cgroup, all cores visible), as Lambda grants vCPUs; "
        f"p50 over {args.trials} warm requests per size in {args.rounds} processes per vCPU count.",
        "",
    ]
    for model_dir in args.model_dirs:
        scaling = measure_scaling(model_dir, args.sizes, args.trials, args.rounds)
        tail = measure_tail(model_dir, args.tail_sizes, args.trials)
        models[model_dir.name] = {"scaling": scaling, "tail": tail}
        lines += [*report(model_dir.name, scaling, tail), ""]
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        results = {"quota_check_cpus_used_at_1_vcpu": used, "models": models}
        args.json.write_text(json.dumps(results, indent=2))
    failed = [
        name
        for name, result in models.items()
        if not all(row["within_tolerance"] for row in result["scaling"].values())
        or not result["tail"]["pair_logits_identical"]
        or not result["tail"]["engine_scores_identical"]
    ]
    if failed:
        print(f"not within 10 % of half, or scores not identical: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
