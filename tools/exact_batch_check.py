"""Exact batches checked at scale: random padded batches against each pair run alone, per int8 model folder.

    python -m tools.exact_batch_check .fixtures/int8 --batches 60
    python -m tools.exact_batch_check DIR --batches 60 ms-marco-MiniLM-L-12-v2 rank-T5-flan

Each batch: 1 to 24 passages of 0 to 60 words (now and then one cut at the model's limit, or every passage the
same), English and multilingual words; every pair's logits from the exact-batch session against the same pair
run alone by an engine loaded without exact batches, bit for bit. Prints pairs compared and mismatches per
model; exits 1 on any mismatch. The unit tests (tests/unit/test_exact_batches.py) check fewer pairs per run.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

HANDLER_DIR = Path(__file__).resolve().parent.parent / "handler"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "root", type=Path, help="a folder of int8 model folders (python -m tools.fixture_model)"
    )
    parser.add_argument("families", nargs="*", help="model folder names (default: every folder in root)")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    import numpy as np

    from reranker.engine import CrossEncoder, EngineOptions
    from tools.fixture_model.corpus import load_words, multilingual_words

    words = load_words() + multilingual_words()[:3000]
    failed = False
    for family in args.families or sorted(path.name for path in args.root.iterdir() if path.is_dir()):
        plain = CrossEncoder.load(args.root / family)
        engine = CrossEncoder.load(args.root / family, EngineOptions(exact_batches=True))
        if engine.runner.batch_session is None:
            print(f"{family}: no exact-batch graph: {engine.exact_batches_refused}")
            failed = True
            continue
        rng = random.Random(family)
        pairs = mismatches = 0
        for _ in range(args.batches):
            count = rng.choice([1, 2, 5, 8, 16, 24])
            kind = rng.random()
            lengths = [rng.choice([0, 1, 2, 4, 8, 16, 30, 60]) for _ in range(count)]
            if kind < 0.05:  # one passage cut at the model's limit
                lengths[0] = rng.choice([300, 500])
            passages = [" ".join(rng.choice(words) for _ in range(length)) for length in lengths]
            if kind > 0.9:  # every row of one length: no padding
                passages = [passages[0]] * count
            query = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
            runs = engine.tokenization.encode(query, passages, "truncate").runs
            batched = engine.runner.infer_exact_batch(runs)
            for index, run in enumerate(runs):
                pairs += 1
                mismatches += not np.array_equal(plain.runner.infer([run])[0], batched[index])
        failed = failed or mismatches > 0
        print(f"{family}: {args.batches} batches, {pairs} pairs, {mismatches} mismatches", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
