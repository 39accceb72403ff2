"""The parity figures docs/benchmarks.md quotes, per fixture family, on the same samples as the parity tests.

    .venv/bin/python -m bench.parity_table

fp32: the largest |ours - FlashRank| over whole requests; int8: the largest |ours - FlashRank's score for the
passage alone|; drift: how far FlashRank's own int8 score of a passage moves when half its neighbours go.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "handler"), str(REPO)]

from tests.integration.test_flashrank_parity import CASES, flashrank_scores  # noqa: E402


def main() -> int:
    print("| family | fp32 max delta | int8 max delta (alone) | FlashRank int8 drift | passages |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case in CASES.values():
        encoder, ranker = case.encoder("fp32"), case.ranker("fp32")
        fp32 = 0.0
        passages = 0
        for request in case.corpus(2024).requests(case.fp32_requests, max_passages=case.max_passages):
            ours = encoder.score(request.query, list(request.passages)).scores
            theirs = flashrank_scores(ranker, request.query, list(request.passages))
            fp32 = max(fp32, *(abs(a - b) for a, b in zip(ours, theirs, strict=True) if a is not None))
            passages += len(request.passages)
        encoder, ranker = case.encoder("int8"), case.ranker("int8")
        int8 = 0.0
        for request in case.corpus(99).requests(case.int8_requests, max_passages=case.max_passages):
            ours = encoder.score(request.query, list(request.passages)).scores
            for index, text in enumerate(request.passages):
                alone = flashrank_scores(ranker, request.query, [text])[0]
                int8 = max(int8, abs((ours[index] or 0.0) - alone))
        drift = 0.0
        rng = random.Random(5)
        requests = case.corpus(11).requests(
            max(2, case.int8_requests // 2),
            min_passages=min(10, case.max_passages),
            max_passages=case.max_passages,
        )
        for request in requests:
            texts = list(request.passages)
            subset = rng.sample(range(len(texts)), k=len(texts) // 2)
            full = flashrank_scores(ranker, request.query, texts)
            partial = flashrank_scores(ranker, request.query, [texts[index] for index in subset])
            drift = max(
                drift, *(abs(full[index] - score) for index, score in zip(subset, partial, strict=True))
            )
        print(f"| {case.name} | {fp32:.1e} | {int8:.1e} | {drift:.3f} | {passages} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
