"""Cold start of the Lambda handler, ours against one built on FlashRank, with tracing off and on.

    .venv/bin/python -m bench.handler_cold_start [--runs 9]
    .venv/bin/python -m bench.handler_cold_start --packages DIR [DIR ...]   built packages (./dev artifact)

Each run is a fresh interpreter: spawn -> import the handler module (model loaded from the layer path)
-> first 10-passage answer through lambda_handler, logging and metrics on. Runs are interleaved so machine
noise hits every variant alike; medians are reported with the ratio ours / FlashRank.

With --packages, each directory is a built function package (handler/Makefile's output, e.g. before and
after a packaging change): the child runs with `-I -S`, so it sees that directory and the standard library
only, like /var/task on Lambda; tracing off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from tools.fixture_model.corpus import CorpusGenerator, SyntheticRequest  # noqa: E402

MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
CHILD = """
import importlib, json, os, sys, time
sys.path[:0] = {paths!r}
module = importlib.import_module(sys.argv[1])
imported = time.time()
class Context:
    function_name, function_version, memory_limit_in_mb = "bench", "1", 1769
    aws_request_id = "bench-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self):
        return 29000
event = json.load(open(sys.argv[2]))
answer = module.lambda_handler(event, Context())
done = time.time()
assert len(answer["results"]) == 10, answer
spawned = float(os.environ["BENCH_SPAWNED_AT"])
json.dump({{"import": imported - spawned, "total": done - spawned}}, open(sys.argv[3], "w"))
"""


def environment(tracing: bool, flashrank: bool, fixtures: Path, bytecode: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "MODEL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if bytecode is not None:  # no usable .pyc anywhere: what a package built without bytecode pays on Lambda
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": bytecode})
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
            "AWS_REGION": "us-east-1",
            "MODEL_LAYER_ROOT": str(fixtures / "int8"),
            "FLASHRANK_CACHE_DIR": str(fixtures / "int8"),
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
            "TRACING": "1" if tracing else "0",
        }
    )
    if tracing:  # what Lambda sets; the X-Ray SDK sends its segments over UDP to the (absent) local daemon
        env.update(
            {
                "LAMBDA_TASK_ROOT": str(REPO / "handler"),
                "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
                "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            }
        )
    return env


def run_once(
    module: str, env: dict[str, str], event: Path, scratch: Path, package: Path | None = None
) -> dict[str, float]:
    result = scratch / "result.json"
    paths = [str(package)] if package else [str(REPO / "handler"), str(REPO)]
    child = CHILD.format(paths=paths)
    env = {**env, "BENCH_SPAWNED_AT": repr(time.time())}
    isolation = ["-I", "-S"] if package else []
    subprocess.run(
        [sys.executable, *isolation, "-c", child, module, str(event), str(result)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    measured: dict[str, float] = json.loads(result.read_text())
    return measured


def compare_packages(packages: list[Path], runs: int, fixtures: Path, request: SyntheticRequest) -> int:
    results: dict[Path, list[dict[str, float]]] = {package: [] for package in packages}
    env = environment(tracing=False, flashrank=False, fixtures=fixtures, bytecode=None)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        event = scratch / "event.json"
        event.write_text(json.dumps({"query": request.query, "passages": list(request.passages)}))
        for run in range(runs + 1):  # run 0 warms the page cache and is dropped
            turn = run % len(packages)
            for package in packages[turn:] + packages[:turn]:
                measured = run_once("reranker.app", env, event, scratch, package.resolve())
                if run:
                    results[package].append(measured)
    print(
        f"Handler cold start from built packages, fresh `python -I -S`, median of {runs} interleaved runs, ms"
    )
    print("| package | files | MB | import | import + first answer |")
    print("|---|---:|---:|---:|---:|")
    for package, timings in results.items():
        files = [path for path in package.rglob("*") if path.is_file()]
        size = sum(path.stat().st_size for path in files) / 1e6
        imported = statistics.median(run["import"] for run in timings) * 1000
        total = statistics.median(run["total"] for run in timings) * 1000
        print(f"| {package} | {len(files)} | {size:.1f} | {imported:.0f} | {total:.0f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--fixtures", type=Path, default=REPO / ".fixtures")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="compile every module from source, as without shipped .pyc files",
    )
    parser.add_argument(
        "--packages", type=Path, nargs="+", help="built function packages to compare (ours only)"
    )
    args = parser.parse_args(argv)
    request = CorpusGenerator(seed=1).request(10)
    if args.packages:
        return compare_packages(args.packages, args.runs, args.fixtures, request)
    variants = [
        (name, module, tracing)
        for tracing in (False, True)
        for name, module in (("ours", "reranker.app"), ("flashrank", "bench.flashrank_handler"))
    ]
    results: dict[tuple[str, bool], list[dict[str, float]]] = {
        (name, tracing): [] for name, _, tracing in variants
    }
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        event = scratch / "event.json"
        event.write_text(json.dumps({"query": request.query, "passages": list(request.passages)}))
        for run in range(args.runs + 1):  # run 0 warms the page cache and is dropped
            for name, module, tracing in variants[run % 4 :] + variants[: run % 4]:
                bytecode = str(scratch / "empty-pycache") if args.no_bytecode else None
                env = environment(tracing, name == "flashrank", args.fixtures, bytecode)
                measured = run_once(module, env, event, scratch)
                if run:
                    results[(name, tracing)].append(measured)
    source = "compiled from source (no .pyc)" if args.no_bytecode else "from .pyc"
    print(f"Handler cold start, fresh process, modules {source}, median of {args.runs} interleaved runs, ms")
    print(
        "| tracing | ours import | ours first answer | FlashRank import | FlashRank first answer | ours/FlashRank |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for tracing in (False, True):
        ours = {
            key: statistics.median(run[key] for run in results[("ours", tracing)]) * 1000
            for key in ("import", "total")
        }
        theirs = {
            key: statistics.median(run[key] for run in results[("flashrank", tracing)]) * 1000
            for key in ("import", "total")
        }
        print(
            f"| {'on' if tracing else 'off'} | {ours['import']:.0f} | {ours['total']:.0f} | {theirs['import']:.0f} "
            f"| {theirs['total']:.0f} | {ours['total'] / theirs['total']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
