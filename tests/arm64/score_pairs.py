"""Score a workload with the engine and with FlashRank: run by tests/arm64 as
`python3.13 -I -S score_pairs.py WORKLOAD.json OUT.json PATH...`, under emulation with the arm64 function package
and FlashRank's pure-Python package on PATH, and with the host's interpreter for the x86_64 reference.

Each job names a fixture model folder, a scorer and requests; the scores go to OUT.json in request order, for
the parent to compare (parity, batch invariance, x86_64 against arm64). FlashRank loads the same model file and
runs on the same onnxruntime wheel as the engine: the function package's.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

workload, out = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[:0] = sys.argv[3:]

import onnxruntime  # noqa: E402
from flashrank import Ranker, RerankRequest  # noqa: E402

from reranker.engine import CrossEncoder, EngineOptions  # noqa: E402


def flashrank_scores(ranker: Ranker, query: str, texts: list[str]) -> list[float]:
    """FlashRank's scores in the caller's order (it returns the passages sorted by score)."""
    passages = [{"id": index, "text": text} for index, text in enumerate(texts)]
    ranked = ranker.rerank(RerankRequest(query=query, passages=passages))
    by_id = {passage["id"]: float(passage["score"]) for passage in ranked}
    return [by_id[index] for index in range(len(texts))]


def score_job(job: dict[str, Any]) -> list[list[float | None]]:
    model_dir, max_length, scorer = Path(job["model_dir"]), job["max_length"], job["scorer"]
    if scorer.startswith("flashrank"):
        ranker = Ranker(
            model_name=model_dir.name,
            cache_dir=str(model_dir.parent),
            max_length=max_length,
            log_level="WARNING",
        )
    else:
        encoder = CrossEncoder.load(model_dir, EngineOptions(max_length=max_length))
    scores = []
    for request in job["requests"]:
        query, texts = request["query"], request["passages"]
        if scorer == "engine":  # the whole request at once
            scores.append(encoder.score(query, texts).scores)
        elif scorer == "engine_alone":  # every passage in a request of its own
            scores.append([encoder.score(query, [text]).scores[0] for text in texts])
        elif scorer == "flashrank":
            scores.append(flashrank_scores(ranker, query, texts))
        elif scorer == "flashrank_alone":
            scores.append([flashrank_scores(ranker, query, [text])[0] for text in texts])
        else:
            raise SystemExit(f"unknown scorer {scorer}")
    return scores


results, seconds = {}, {}
for job in json.loads(workload.read_text(encoding="utf-8"))["jobs"]:
    started = time.perf_counter()
    results[job["name"]] = score_job(job)
    seconds[job["name"]] = round(time.perf_counter() - started, 2)
report = {
    "machine": platform.machine(),
    "onnxruntime": onnxruntime.__file__,
    "scores": results,
    "seconds": seconds,
}
out.write_text(json.dumps(report), encoding="utf-8")
