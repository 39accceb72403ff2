"""The engine's Python time around its model runs: one request of short passages, scored again and again.

    python -m tools.engine_overhead [--model DIR] [--passages 50] [--words 4-12] [--repeats 300] [--profile]

Prints the median time of CrossEncoder.score on the request, the median time of the same model runs made
straight through onnxruntime (the same feeds, built beforehand, on the sessions the plan picks), and their
difference: what tokenizing, feeds, planning and bookkeeping add; then the quickest time of some of those
pieces alone (tokenizing; tokenizing with the word cache emptied first, as in a new environment; building the
feeds; the per-passage bookkeeping), which a busy machine blurs less.
``--schedule exact_batches`` builds the exact batch graph and measures the run costs first. ``--profile`` prints cProfile's top functions by own time too. A timing: run it on a quiet
machine (nothing else busy), pinned to one core, e.g. ``taskset -c 0 python -m tools.engine_overhead``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools.fixture_model.corpus import CorpusGenerator
from tools.timing import median_seconds

REPO = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO / "handler"
DEFAULT_MODEL = REPO / ".fixtures" / "int8" / "ms-marco-TinyBERT-L-2-v2"


def short_request(passages: int, words: tuple[int, int], seed: int = 7) -> tuple[str, list[str]]:
    """A query and ``passages`` passages of ``words`` words each (product titles, at the short end)."""
    corpus = CorpusGenerator(seed=seed)
    pick = random.Random(seed)
    request = corpus.request(passages)
    texts = [" ".join(text.split()[: pick.randint(*words)]) for text in request.passages]
    return request.query, texts


def min_seconds(action: Callable[[], None], repeats: int) -> float:
    quickest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        quickest = min(quickest, time.perf_counter() - started)
    return quickest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--passages", type=int, default=50)
    parser.add_argument("--words", default="4-12", help="words per passage, low-high")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument(
        "--schedule", default="single", choices=["auto", "single", "sorted_batches", "exact_batches"]
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    from reranker.best_of_windows import BestOfWindows
    from reranker.engine import CrossEncoder, EngineOptions

    low, high = (int(part) for part in args.words.split("-"))
    options = EngineOptions(
        schedule=args.schedule, parallel_runs=1, exact_batches=args.schedule == "exact_batches"
    )
    encoder = CrossEncoder.load(args.model, options)
    query, passages = short_request(args.passages, (low, high))
    runs = encoder.tokenization.encode(query, passages, "truncate").runs
    runner = encoder.runner
    feeds = [(runner.session_of(batch, 1), runner.feed(batch)) for batch in runner.batches(runs)]

    def engine() -> None:
        encoder.score(query, passages)

    def runs_only() -> None:
        for session, feed in feeds:
            session.run(None, feed)

    batches = list(runner.batches(runs))
    logits = [runner.infer(batch, runner.session_of(batch, 1)) for batch in batches]

    def tokenize() -> None:
        encoder.tokenization.encode(query, passages, "truncate")

    def build_feeds() -> None:
        for batch in batches:
            runner.feed(batch)

    def bookkeeping() -> None:
        best = BestOfWindows(runs, len(passages))
        for batch, batch_logits in zip(batches, logits, strict=True):
            best.record(batch, batch_logits)
        best.results()

    for _ in range(20):  # warm up both
        engine()
        runs_only()
    whole = median_seconds(engine, args.repeats)
    bound = median_seconds(runs_only, args.repeats)
    tokens = sum(len(run.ids) for run in runs)
    print(
        f"model {args.model.name}, {encoder.schedule}, {len(passages)} passages, {tokens} tokens, {len(feeds)} runs"
    )
    print(f"engine.score: {whole * 1e3:.3f} ms (median of {args.repeats})")
    print(f"runs alone:   {bound * 1e3:.3f} ms")
    print(
        f"around runs:  {(whole - bound) * 1e3:.3f} ms ({(whole - bound) / len(passages) * 1e6:.1f} us a passage)"
    )

    def tokenize_cold() -> None:  # as the first request of an environment does
        if encoder.tokenization.word_pieces is not None:
            encoder.tokenization.word_pieces.clear()
        tokenize()

    pieces = {
        "tokenize": tokenize,
        "tokenize, no word cached": tokenize_cold,
        "feeds": build_feeds,
        "bookkeeping": bookkeeping,
    }
    quickest = {name: min_seconds(piece, args.repeats * 5) for name, piece in pieces.items()}
    print(
        "pieces, quickest of",
        args.repeats * 5,
        ":",
        ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in quickest.items()),
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.repeats):
            engine()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
