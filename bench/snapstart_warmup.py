"""What SnapStart's before-snapshot warm-up saves on the first request, in fresh processes on one core.

    .venv/bin/python -m bench.snapstart_warmup [--runs 9] [--passages 10] [--models NAME ...] [--model-root DIR]

Each run is a fresh interpreter pinned to one core (1769 MB: one vCPU) that does what a SnapStart environment
does, minus the snapshot: import the handler (the init: model load), run the SnapStart hooks with awslambdaric's
hook runner (the code Lambda's python runtime runs), then answer the same request twice through lambda_handler (score
cache off, so the second is scored again: the warm time of the same texts). Two variants, interleaved so machine noise hits both alike:

- warm-up: the before-snapshot hooks (the warm-up inference) and then the after-restore hooks;
- no warm-up: the after-restore hooks only (what the snapshot would hold without the warm-up).

Reported per model, medians over the runs in ms: the first request with and without the warm-up, what the
warm-up saves, the warm-up itself (paid once, at publish time) and the second answer (warm, both variants).

What this cannot measure: SnapStart's restore (Lambda's microVM snapshot, restore duration, pages of the
snapshot read back on first touch) exists only on Lambda. The REPORT line's `Restore Duration` and the first
invocation's `Duration` there are the figures to read for it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from bench.pinned import run_pinned  # noqa: E402
from tools.fixture_model.corpus import CorpusGenerator  # noqa: E402

MODELS = ("ms-marco-TinyBERT-L-2-v2", "ms-marco-MiniLM-L-12-v2")
CHILD = """
import json, sys, time
sys.path[:0] = {paths!r}
from reranker import app, runtime
from awslambdaric import lambda_runtime_hooks_runner as hooks
from tools.invoke import LocalContext
event = {event!r}
if {warm_up!r}:
    hooks.run_before_snapshot()
hooks.run_after_restore()
timings = {{}}
for name in ("first", "second"):
    started = time.perf_counter()
    answer = app.lambda_handler(event, LocalContext(memory_mb=1769))
    timings[name] = time.perf_counter() - started
    assert len(answer["results"]) == len(event["passages"]), answer
timings["warm_up"] = runtime.STATE.warm_up_seconds
print(json.dumps(timings))
"""


def child_code(event: dict[str, Any], warm_up: bool) -> str:
    return CHILD.format(paths=[str(REPO / "handler"), str(REPO)], event=event, warm_up=warm_up)


def environment(model_dir: Path) -> dict[str, str]:
    return {
        "MODEL_DIR": str(model_dir),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "SCORE_CACHE_MB": "0",
    }


def measure(model_dir: Path, runs: int, event: dict[str, Any]) -> dict[bool, list[dict[str, float]]]:
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    env = environment(model_dir)
    for run in range(runs):
        for warm_up in (True, False) if run % 2 == 0 else (False, True):
            results[warm_up].append(run_pinned(child_code(event, warm_up), vcpus=1, environment=env))
    return results


def median_ms(timings: list[dict[str, float]], key: str) -> float:
    return statistics.median(timing[key] for timing in timings) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapstart_warmup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per variant and model")
    parser.add_argument("--passages", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--model-root", type=Path, default=REPO / ".fixtures" / "int8", help="folder of model folders"
    )
    args = parser.parse_args(argv)
    request = CorpusGenerator(seed=1).request(args.passages)
    event = {"query": request.query, "passages": list(request.passages)}
    print(
        f"First request after init, fresh process on one core, {args.passages} passages, "
        f"median of {args.runs} runs per variant, ms (models from {args.model_root.name})"
    )
    print("| model | first, no warm-up | first, warm-up | saved | warm-up (at publish) | second answer |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        results = measure(args.model_root / model, args.runs, event)
        cold, warm = median_ms(results[False], "first"), median_ms(results[True], "first")
        warm_up = median_ms(results[True], "warm_up")
        second = median_ms(results[True] + results[False], "second")
        print(f"| {model} | {cold:.1f} | {warm:.1f} | {cold - warm:.1f} | {warm_up:.1f} | {second:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
