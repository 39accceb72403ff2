"""Benchmark the features beyond FlashRank: Cohere clients end to end, batch overhead, warm-cache speed-up.

    .venv/bin/python -m bench.features [--model-dir DIR] [--trials 5] [--json bench/out/features.json]

1. Cohere compatibility: the unmodified cohere SDK (ClientV2 and v1 Client) and LangChain's CohereRerank
   against tools.serve on loopback; checks each answer against the native endpoint's scores and reports the
   HTTP round trip next to the in-process handler time.
2. Batch: a 100-request {"requests": [...]} invocation against the sum of its parts' engine time
   (each request's CrossEncoder.score alone). Target: at most 1.1x.
3. Warm cache: a repeated 50-passage request, cache hit against miss (each miss a fresh query).
   Target: a hit at least 20x faster.
Timings are medians of --trials; the handler runs in-process with the cache off except in part 3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from tools.invoke import FIXTURE_MODEL_DIR, LocalContext, local_environment  # noqa: E402

BATCH_REQUESTS = 100
BATCH_PASSAGES = 10
CACHE_PASSAGES = 50
TARGET_BATCH_RATIO = 1.1
TARGET_CACHE_SPEEDUP = 20.0
WORDS = [
    "inference",
    "latency",
    "batching",
    "quantization",
    "memory",
    "bandwidth",
    "token",
    "decoding",
    "attention",
    "cache",
    "kernel",
    "throughput",
    "serving",
    "model",
    "transformer",
    "airship",
    "weather",
    "river",
    "bread",
    "paris",
    "tower",
    "library",
    "vector",
    "search",
    "retrieval",
    "chunk",
    "passage",
    "query",
    "ranking",
    "relevance",
    "cross",
    "encoder",
    "lambda",
    "function",
    "cold",
    "start",
]


def passage(rng: random.Random, words: int = 90) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def bench_cohere_clients(app: Any, rng: random.Random, trials: int) -> dict[str, Any]:
    import cohere
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    from tools.serve import make_server

    documents = [passage(rng, 60) for _ in range(20)]
    query = "how to cut llm inference latency"
    server = make_server(app.lambda_handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        native = app.lambda_handler({"query": query, "passages": documents}, LocalContext())
        expected = [(r["index"], r["score"]) for r in native["results"]]
        v2 = cohere.ClientV2(base_url=base_url, api_key="local")
        v1 = cohere.Client(base_url=base_url, api_key="local")
        langchain = CohereRerank(base_url=base_url, cohere_api_key="local", model="rerank-v3.5", top_n=None)
        checks = {
            "cohere.ClientV2.rerank": [
                (r.index, r.relevance_score)
                for r in v2.rerank(model="rerank-v3.5", query=query, documents=documents).results
            ]
            == expected,
            "cohere.Client.rerank (v1)": [
                (r.index, r.relevance_score) for r in v1.rerank(query=query, documents=documents).results
            ]
            == expected,
            "langchain_cohere.CohereRerank.rerank": [
                (r["index"], r["relevance_score"]) for r in langchain.rerank(documents, query)
            ]
            == expected,
            "langchain_cohere.CohereRerank.compress_documents": [
                d.metadata["relevance_score"]
                for d in langchain.compress_documents([Document(page_content=t) for t in documents], query)
            ]
            == [score for _, score in expected],
        }
        sdk_times, handler_times = [], []
        for _ in range(trials):
            started = time.perf_counter()
            v2.rerank(model="rerank-v3.5", query=query, documents=documents)
            sdk_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            app.lambda_handler({"query": query, "passages": documents}, LocalContext())
            handler_times.append(time.perf_counter() - started)
    finally:
        server.shutdown()
        server.server_close()
    return {
        "clients_agree_with_native_scores": checks,
        "documents": len(documents),
        "cohere_sdk_round_trip_ms": median_ms(sdk_times),
        "native_in_process_ms": median_ms(handler_times),
    }


def bench_batch(app: Any, rng: random.Random, trials: int) -> dict[str, Any]:
    engine = app.STATE.runtime.engine
    requests = [
        {
            "query": f"query {index} " + passage(rng, 6),
            "passages": [passage(rng) for _ in range(BATCH_PASSAGES)],
        }
        for index in range(BATCH_REQUESTS)
    ]
    ratios, batch_times, part_times = [], [], []
    for _ in range(trials):
        started = time.perf_counter()
        for request in requests:
            engine.score(request["query"], request["passages"])
        parts = time.perf_counter() - started
        started = time.perf_counter()
        answer = app.lambda_handler({"requests": requests}, LocalContext(timeout_ms=900_000))
        whole = time.perf_counter() - started
        assert len(answer["responses"]) == BATCH_REQUESTS and "error" not in answer["responses"][0]
        ratios.append(whole / parts)
        batch_times.append(whole)
        part_times.append(parts)
    ratio = statistics.median(ratios)
    return {
        "requests": BATCH_REQUESTS,
        "passages_per_request": BATCH_PASSAGES,
        "sum_of_engine_time_ms": median_ms(part_times),
        "batch_invocation_ms": median_ms(batch_times),
        "ratio": round(ratio, 3),
        "target": f"<= {TARGET_BATCH_RATIO}",
        "met": ratio <= TARGET_BATCH_RATIO,
    }


def bench_cache(app: Any, rng: random.Random, trials: int) -> dict[str, Any]:
    passages = [passage(rng) for _ in range(CACHE_PASSAGES)]
    miss_times, hit_times = [], []
    for trial in range(trials):
        request = {"query": f"fresh question number {trial} " + passage(rng, 5), "passages": passages}
        started = time.perf_counter()
        miss = app.lambda_handler(request, LocalContext())
        miss_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        hit = app.lambda_handler(request, LocalContext())
        hit_times.append(time.perf_counter() - started)
        assert hit["usage"]["cached"] == CACHE_PASSAGES and hit["results"] == miss["results"]
    speedup = statistics.median(miss_times) / statistics.median(hit_times)
    return {
        "passages": CACHE_PASSAGES,
        "miss_ms": median_ms(miss_times),
        "hit_ms": median_ms(hit_times),
        "speedup": round(speedup, 1),
        "target": f">= {TARGET_CACHE_SPEEDUP}x",
        "met": speedup >= TARGET_CACHE_SPEEDUP,
        "identical_scores": True,
    }


def quiet(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run with the handler's JSON logs and EMF records sent to /dev/null (they would dominate the output)."""
    import contextlib

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        from reranker.observability import logger

        handler = logger.registered_handler
        previous = getattr(handler, "stream", None)
        if previous is not None:
            handler.setStream(sink)  # type: ignore[attr-defined]
        try:
            return function()
        finally:
            if previous is not None:
                handler.setStream(previous)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=FIXTURE_MODEL_DIR)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.update(local_environment(args.model_dir))
    os.environ.update({"SCORE_CACHE_MB": "0", "POWERTOOLS_LOG_LEVEL": "WARNING"})
    from reranker import app

    rng = random.Random(20240531)
    results: dict[str, Any] = {"model_dir": str(args.model_dir), "trials": args.trials}
    results["cohere_clients"] = quiet(lambda: bench_cohere_clients(app, rng, args.trials))
    results["batch"] = quiet(lambda: bench_batch(app, rng, args.trials))
    app.reset({**os.environ, "SCORE_CACHE_MB": "32"})
    results["cache"] = quiet(lambda: bench_cache(app, rng, args.trials))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    met = (
        all(results["cohere_clients"]["clients_agree_with_native_scores"].values())
        and results["batch"]["met"]
        and results["cache"]["met"]
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
