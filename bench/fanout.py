"""Exact fan-out: one core against two worker processes pinned to the two cores, the invoke overhead, and a
projection (marked) for 5, 10 and 20 workers.

    .venv/bin/python -m tools.fixture_model --shapes full --out DIR      # full-size same-shape models
    .venv/bin/python -m bench.fanout --model-dir DIR/int8/ms-marco-MiniLM-L-12-v2 \\
        [--sizes 50 100] [--trials 10] [--json bench/out/fanout.json]

Needs a quiet machine with two cores. Everything goes through the real path: botocore's Lambda client against
the local Invoke stand-in (tests/lambda_invoke_api.py), whose function is backed by real handler processes
(tests/handler_processes.py), each pinned to its own core with ENGINE_PARALLEL_RUNS=1 (one vCPU each).

- one core: a single process, FANOUT_MAX_WORKERS=0; its warm p50 per request size, and the inference time per
  token it implies, invoke overhead taken off (the FANOUT_TOKEN_COST_US to deploy with, at one vCPU);
- fan-out: two processes on cores 0 and 1, FANOUT_MAX_WORKERS=1 and a target that always splits: the
  coordinator scores one shard and invokes itself for the other; the answers must equal the one-core ones
  bit for bit (checked per request);
- invoke overhead: the warm round trip of an empty rerank invoke (client, stand-in, handler), p50;
- projected (not measured): T(n) = T(1 core) / n + overhead + the coordinator's extra tokenizing, for n = 5, 10
  and 20 shards (workers + the coordinator), assuming each execution gets a whole vCPU and warm workers.
  Real Lambda adds its own invoke latency (tens of ms in-region) and the workers' cold starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SIZES = (50, 100)
PROJECTED_SHARDS = (5, 10, 20)
FUNCTION = "reranker-bench"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
DEFAULT_MODEL = REPO / ".fixtures" / "int8" / "ms-marco-MiniLM-L-12-v2"
BASE_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
    "ENGINE_PARALLEL_RUNS": "1",
    "ORT_INTRA_OP_THREADS": "1",
    "SCORE_CACHE_MB": "0",
    "AWS_REGION": "us-east-1",
}


@contextmanager
def invoke_api_backed_by(functions: dict[str, Any]) -> Iterator[Any]:
    """The Invoke stand-in on loopback and a botocore client pointed at it (dummy credentials)."""
    import botocore.session
    from botocore.config import Config

    from tests.lambda_invoke_api import invoke_api
    from tests.loopback import serving

    with serving(invoke_api(functions, timeout_ms=300_000)) as address:
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_LAMBDA": f"http://{address}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            }
        )
        config = Config(read_timeout=900, retries={"total_max_attempts": 1})
        yield botocore.session.get_session().create_client("lambda", region_name="us-east-1", config=config)


def invoke(client: Any, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.invoke(FunctionName=ARN, Payload=json.dumps(payload).encode("utf-8"))
    answer = json.loads(response["Payload"].read())
    seconds = time.perf_counter() - started
    if response.get("FunctionError"):
        raise SystemExit(f"the function failed: {answer}")
    return seconds, answer


def scores_by_index(answer: dict[str, Any]) -> list[tuple[int, Any]]:
    return sorted((result["index"], result["score"]) for result in answer["results"])


def measure(model_dir: Path, sizes: list[int], trials: int, seed: int, *, fanout: bool) -> dict[str, Any]:
    """Warm latencies per size through the stand-in: one pinned process, or two (fan-out) on cores 0 and 1."""
    from tests.handler_processes import HandlerProcesses
    from tools.fixture_model.corpus import CorpusGenerator

    cores = sorted(os.sched_getaffinity(0))
    environment = {**BASE_ENVIRONMENT, "MODEL_DIR": str(model_dir)}
    if fanout:
        # Always split in two: a target far below any request's estimate.
        environment |= {
            "FANOUT_MAX_WORKERS": "1",
            "FANOUT_TARGET_MS": "10",
            "FANOUT_TOKEN_COST_US": "100000",
            "FANOUT_MEASURE_TOKEN_COST": "false",
        }
        pool = HandlerProcesses(environment, 2, cores=[[cores[0]], [cores[1]]])
    else:
        pool = HandlerProcesses(environment, 1, cores=[[cores[0]]])
    corpus = CorpusGenerator(seed=seed)
    result: dict[str, Any] = {"sizes": {}}
    try:
        with invoke_api_backed_by({ARN: pool}) as client:
            empty = {"query": "warm", "passages": []}
            invoke(client, {"query": "warm", "passages": ["warm up"] * 4})  # cold starts, out of the timing
            invoke(client, {"query": "warm", "passages": ["warm up"] * 4})
            result["invoke_overhead_ms"] = 1000 * statistics.median(
                invoke(client, empty)[0] for _ in range(max(5, trials))
            )
            for size in sizes:
                requests = [corpus.request(size) for _ in range(trials)]
                samples, answers, tokens = [], [], []
                for request in requests:
                    payload = {
                        "query": request.query,
                        "passages": list(request.passages),
                        "return_text": False,
                    }
                    seconds, answer = invoke(client, payload)
                    samples.append(seconds)
                    answers.append(scores_by_index(answer))
                    tokens.append(answer["usage"]["tokens"])
                result["sizes"][str(size)] = {
                    "p50_ms": 1000 * statistics.median(samples),
                    "samples_ms": [1000 * sample for sample in samples],
                    "tokens": tokens,
                    "answers": answers,
                }
    finally:
        pool.stop()
    return result


def project(one_core_ms: float, overhead_ms: float, two_shard_ms: float) -> dict[str, float]:
    """Projected latency with n shards: the measured two-shard excess over half the one-core time (the
    coordinator's extra tokenizing and merge) plus one invoke overhead, on top of one n-th of the work."""
    excess_ms = max(0.0, two_shard_ms - one_core_ms / 2 - overhead_ms)
    return {str(n): one_core_ms / n + overhead_ms + excess_ms for n in PROJECTED_SHARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two usable cores")
    sys.path[:0] = [str(REPO / "handler"), str(REPO)]

    one = measure(args.model_dir, args.sizes, args.trials, args.seed, fanout=False)
    two = measure(args.model_dir, args.sizes, args.trials, args.seed, fanout=True)
    overhead = two["invoke_overhead_ms"]
    print(
        f"model: {args.model_dir.name}   trials: {args.trials}   invoke overhead (p50, measured): {overhead:.1f} ms"
    )
    print("passages  1 core p50  fan-out (2 cores) p50  speed-up  identical  token cost (us/token, 1 core)")
    rows: dict[str, Any] = {}
    for size in args.sizes:
        base, split = one["sizes"][str(size)], two["sizes"][str(size)]
        identical = base["answers"] == split["answers"]
        cost_us = 1000 * max(0.0, base["p50_ms"] - overhead) / statistics.median(base["tokens"])
        projected = project(base["p50_ms"], overhead, split["p50_ms"])
        rows[str(size)] = {
            "one_core_p50_ms": base["p50_ms"],
            "fanout_two_cores_p50_ms": split["p50_ms"],
            "speedup": base["p50_ms"] / split["p50_ms"],
            "identical": identical,
            "token_cost_us": cost_us,
            "projected_p50_ms": projected,
        }
        print(
            f"{size:8d}  {base['p50_ms']:9.1f} ms  {split['p50_ms']:19.1f} ms  {base['p50_ms'] / split['p50_ms']:7.2f}x"
            f"  {identical!s:9}  {cost_us:.1f}"
        )
        print("          projected: " + ", ".join(f"{n} shards {ms:.1f} ms" for n, ms in projected.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"model": args.model_dir.name, "invoke_overhead_ms": overhead, "sizes": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if all(row["identical"] for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
