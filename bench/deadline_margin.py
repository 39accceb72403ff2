"""How much of DEADLINE_MARGIN_MS is left when the function answers a huge request with little time, and what
tokenizing 50 and 100 MS MARCO-like passages, 50 passages of 16,384 characters, and 50 passages past ASCII
(French; English with curly quotes and dashes) costs.

    .venv/bin/python -m bench.deadline_margin [--handler DIR] [--runs 7]

The margin: lambda_handler gets 1000 passages of 3 900 characters and a Lambda context with 700 ms remaining
(DEADLINE_MARGIN_MS 500, the default, so 200 ms of budget); the figure is what the context says is left when
the handler returns (median of --runs). --handler points at another checkout's handler/ to measure it the same
way (e.g. `git archive <commit> handler | tar -x -C /tmp/old` for a before/after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / ".fixtures" / "int8" / "ms-marco-TinyBERT-L-2-v2"
ENV = {
    "POWERTOOLS_SERVICE_NAME": "reranker",
    "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "AWS_LAMBDA_FUNCTION_NAME": "reranker-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
    "AWS_REGION": "us-east-1",
    "SCORE_CACHE_MB": "0",
    "MODEL_DIR": str(MODEL_DIR),
}


def margin_left(app: Any, runs: int) -> list[int]:
    from tools.invoke import LocalContext

    words = ("retrieval", "augmented", "generation", "latency", "passage", "tokenizer", "reranker")
    text = " ".join(words[index % len(words)] for index in range(600))[:3900]
    payload = {"query": "how fast is the tokenizer", "passages": [text] * 1000, "return_text": False}
    left = []
    for _ in range(runs):
        context = LocalContext(timeout_ms=700)
        app.lambda_handler(payload, context)
        left.append(context.get_remaining_time_in_millis())
    return left


def tokenize_ms(engine: Any, passages: int, runs: int) -> float:
    from tools.fixture_model.corpus import CorpusGenerator

    requests = [CorpusGenerator(seed=seed).request(passages) for seed in range(runs)]
    timings = []
    for request in requests * 3:
        started = time.perf_counter()
        engine.tokenization.encode(request.query, request.passages, "truncate")
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def against_the_tokenizer_ms(engine: Any, query: str, passages: list[str], runs: int) -> tuple[float, float]:
    """Medians: the passages through the engine's tokenizing, and (query, passage) pairs through the tokenizer."""
    engine.tokenization.encode(
        query, passages, "truncate"
    )  # characters past the load-time blocks: learned once
    ours, theirs = [], []
    for _ in range(runs):
        started = time.perf_counter()
        engine.tokenization.encode(query, passages, "truncate")
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        engine.tokenization.tokenizer.encode_batch_fast([(query, passage) for passage in passages])
        theirs.append((time.perf_counter() - started) * 1000)
    return statistics.median(ours), statistics.median(theirs)


def long_passages(query: str = "how long does a long passage take to tokenize") -> tuple[str, list[str]]:
    """50 passages of 16,384 characters (the engine cuts them before tokenizing)."""
    from tools.fixture_model.corpus import CorpusGenerator

    filler = " ".join(CorpusGenerator(seed=3).request(20).passages)
    return query, [(filler[index:] + filler)[:16384] for index in range(0, 50 * 97, 97)]


def accented_passages(query: str = "où est l\u2019église") -> tuple[str, list[str]]:
    """50 passages past ASCII: French, and English with curly quotes and dashes."""
    french = "Le café de la Société Générale, « très » naïf, à côté de l\u2019église Saint-Étienne. "
    curly = "The company\u2019s \u201cnew\u201d model\u2014released in 2024\u2014isn\u2019t cheap\u2026 "
    return query, [((french if index % 2 else curly) * 20)[index : index + 1100] for index in range(50)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handler", type=Path, default=REPO / "handler")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path[:0] = [str(args.handler), str(REPO)]
    os.environ.update(ENV)
    from reranker import app

    app.reset(ENV)
    engine = app.STATE.runtime.engine
    left = margin_left(app, args.runs)
    print(f"handler: {args.handler}")
    print(f"margin left at 700 ms, 1000 x 3900 chars: median {statistics.median(left)} ms, runs {left}")
    for passages in (50, 100):
        print(f"tokenize {passages} passages: median {tokenize_ms(engine, passages, 20):.2f} ms")
    ours, theirs = against_the_tokenizer_ms(engine, *accented_passages(), 15)
    print(
        f"tokenize 50 French / curly-quoted passages: median {ours:.2f} ms (the tokenizer itself {theirs:.2f} ms)"
    )
    ours, whole = against_the_tokenizer_ms(engine, *long_passages(), 15)
    print(
        f"tokenize 50 passages of 16,384 characters: median {ours:.1f} ms (the tokenizer on whole texts {whole:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
