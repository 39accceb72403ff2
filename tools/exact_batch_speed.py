"""Rough speed of an int8 model's exact-batch graph against its per-pair session (run it alone on the machine).

    python -m tools.exact_batch_speed .fixtures/int8/ms-marco-TinyBERT-L-2-v2 [--repeats 30]

Prints: CrossEncoder.load without and with exact batches; one pair through the rewritten graph against the
original; and, for pairs of 16, 32 and 64 tokens in lists of 8, 16 and 48, the time of one exact batch against
one run per pair. Medians of --repeats rounds, one intra-op thread, as the engine runs on one vCPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.timing import median_seconds

HANDLER_DIR = Path(__file__).resolve().parent.parent / "handler"
TOKENS = (16, 32, 64)
PAIRS = (8, 16, 48)


def median_ms(work: Callable[[], object], repeats: int) -> float:
    return median_seconds(work, repeats) * 1000


def pairs_of(length: int, count: int) -> list[Any]:
    """``count`` pairs of ``length`` tokens or up to 3 fewer (lists are seldom all of one length)."""
    from reranker.tokenization import PairInput

    pairs = []
    for index in range(count):
        ids = [1000 + (index + position) % 5000 for position in range(length - index % 4)]
        pairs.append(PairInput(index, ids, [0] * len(ids)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    from reranker.engine import CrossEncoder, EngineOptions

    # Loads interleaved, so that a drift in the machine's load falls on both sides alike.
    loads: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(max(5, args.repeats // 2)):
        for exact_batches in (False, True):
            options = EngineOptions(exact_batches=exact_batches)
            loads[exact_batches].append(
                median_ms(lambda options=options: CrossEncoder.load(args.model_dir, options), 1)
            )
    without, with_batches = statistics.median(loads[False]), statistics.median(loads[True])
    engine = CrossEncoder.load(args.model_dir, EngineOptions(exact_batches=True))
    runner = engine.runner
    if runner.batch_session is None:
        sys.exit(f"no exact-batch graph: {engine.exact_batches_refused}")
    print(
        f"{args.model_dir.name}: CrossEncoder.load {without:.1f} ms, with exact batches {with_batches:.1f} ms "
        f"(+{with_batches - without:.1f} ms)"
    )
    for length in TOKENS:
        pair = pairs_of(length, 1)
        original = median_ms(lambda pair=pair: runner.infer(pair), args.repeats)
        rewritten = median_ms(lambda pair=pair: runner.infer_exact_batch(pair), args.repeats)
        print(f"one pair of {length} tokens: original {original:.2f} ms, rewritten {rewritten:.2f} ms")
    print("tokens pairs  alone(ms)  exact batch(ms)  alone/batch")
    for length in TOKENS:
        for count in PAIRS:
            runs = pairs_of(length, count)
            alone = median_ms(lambda runs=runs: [runner.infer([run]) for run in runs], args.repeats)
            batch = median_ms(lambda runs=runs: runner.infer_exact_batch(runs), args.repeats)
            print(f"{length:>6} {count:>5} {alone:>10.2f} {batch:>16.2f} {alone / batch:>12.2f}")


if __name__ == "__main__":
    main()
