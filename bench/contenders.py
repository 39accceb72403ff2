"""One benchmark contender in its own fresh process: warm-up, then timed requests of every length distribution.

    python -m bench.contenders '{"contender": "ours", "model": DIR, "vcpus": 1, ...}'

bench/run.py starts one such child per contender, vCPU count and repeat, under a CPU quota (bench/cpu_quota.py);
its last stdout line is a JSON object. The contenders:

- ours: the engine as the function configures itself at 1769 MB x vCPUs (its settings' defaults), timed
  from text to scores; no score cache (the engine is called directly).
- flashrank: FlashRank's Ranker as shipped: onnxruntime's default session, which starts an intra-op thread
  per core it sees (under a quota: every core of the machine).
- flashrank-1-thread: the same Ranker with its session rebuilt from the same model file with
  SessionOptions.intra_op_num_threads = 1 (FlashRank 0.2.10 makes `Ranker.session` in __init__ with no
  options and has no knob, so a user tuning it for one vCPU replaces the attribute, as here).
- bound: each pair alone through the original graph (the engine's session, one intra-op thread), already
  tokenized, unpadded; only the onnxruntime runs are timed (no tokenizing, no Python around them). With N
  vCPUs the pairs are shared out longest first over N threads, each running its share in a loop.
- batched-bound: the same, through the engine's exact-batch session (`runner.batch_session` of an engine
  loaded with `exact_batches` on, where EngineOptions has it) in padded batches of pairs sorted by length
  (`runner.feed` pads them), at each of the job's batch sizes: the size with the lowest median is kept
  and named; "available": false when the engine has no such session.
- batched-floor: the batched bound's batches through the original graph instead (runner.session): dynamic
  quantization then takes one scale per batch, so the scores are not exact; only the time counts. What exact
  batches would take if exactness cost nothing: the floor of any batching on onnxruntime's own kernels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONTENDERS = ("ours", "flashrank", "flashrank-1-thread", "bound", "batched-bound", "batched-floor")
# Between timed requests: one CPU quota period, so that the previous request's spinning intra-op workers
# have gone idle and each request starts on a fresh quota period, as one arriving alone would.
PAUSE_SECONDS = 0.1

# A prepared request: run() times it and returns seconds.
Prepared = Any
Contender = tuple[Callable[[Any], Prepared], Callable[[Prepared], float]]


def _imports() -> None:
    sys.path[:0] = [str(REPO / "handler"), str(REPO)]


def _ours(model: Path, vcpus: int) -> Contender:
    from reranker.config import LAMBDA_MEMORY_SIZE, ONE_VCPU_MEMORY_MB, Settings
    from reranker.engine import CrossEncoder, EngineOptions

    # The engine's own settings from this environment (ENGINE_*, ORT_*), so a schedule can be compared.
    tuning = {key: value for key, value in os.environ.items() if key.startswith(("ENGINE_", "ORT_"))}
    settings = Settings.from_env({**tuning, LAMBDA_MEMORY_SIZE: str(ONE_VCPU_MEMORY_MB * vcpus)})
    encoder = CrossEncoder.load(model, EngineOptions.from_settings(settings))

    def run(request: Any) -> float:
        started = time.perf_counter()
        encoder.score(request.query, request.passages)
        return time.perf_counter() - started

    return (lambda request: request), run


def flashrank_ranker(model: Path, *, one_thread: bool) -> Any:
    """FlashRank's Ranker on ``model`` as shipped, or with its session rebuilt for one intra-op thread."""
    import onnxruntime as ort
    from flashrank import Ranker
    from flashrank.Config import model_file_map

    if model.name not in model_file_map:
        raise SystemExit(f"FlashRank knows no model named {model.name}: the model folder must carry its name")
    ranker = Ranker(model_name=model.name, cache_dir=str(model.parent), log_level="WARNING")
    if one_thread:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        ranker.session = ort.InferenceSession(str(ranker.model_dir / model_file_map[model.name]), options)
    return ranker


def _flashrank(model: Path, one_thread: bool) -> Contender:
    from flashrank import RerankRequest

    ranker = flashrank_ranker(model, one_thread=one_thread)

    def prepare(request: Any) -> Any:
        return request.query, request.passages

    def run(prepared: tuple[str, tuple[str, ...]]) -> float:
        query, texts = prepared
        passages = [{"id": index, "text": text} for index, text in enumerate(texts)]
        started = time.perf_counter()
        ranker.rerank(RerankRequest(query=query, passages=passages))
        return time.perf_counter() - started

    return prepare, run


def share_out(items: list[Any], sizes: list[int], parts: int) -> list[list[Any]]:
    """``items`` dealt out longest first, each to the part with the least work so far (by ``sizes``)."""
    shares: list[list[Any]] = [[] for _ in range(parts)]
    load = [0] * parts
    for size, item in sorted(zip(sizes, items, strict=True), key=lambda pair: -pair[0]):
        lightest = load.index(min(load))
        shares[lightest].append(item)
        load[lightest] += size
    return [share for share in shares if share]


def _bound(
    model: Path, vcpus: int, batch_sizes: list[int] | None, *, exact: bool = True
) -> dict[str, Contender] | None:
    """The bound (``batch_sizes`` None: each pair alone), or the batched bound, one variant per batch size;
    ``exact`` False: the batched floor (the same batches through the original graph)."""
    import numpy as np

    from reranker.engine import CrossEncoder, EngineOptions

    options = EngineOptions(intra_op_threads=1, parallel_runs=1)
    if (
        exact
        and batch_sizes
        and "exact_batches" in {field.name for field in dataclasses.fields(EngineOptions)}
    ):
        options = dataclasses.replace(options, exact_batches=True)  # the engine's opt-in, where it has one
    encoder = CrossEncoder.load(model, options)
    runner = encoder.runner
    session = getattr(runner, "batch_session", None) if batch_sizes and exact else runner.session
    if session is None:
        return None
    pool = ThreadPoolExecutor(vcpus, thread_name_prefix="bound") if vcpus > 1 else None

    def preparer(batch_size: int) -> Callable[[Any], list[list[dict[str, np.ndarray]]]]:
        def prepare(request: Any) -> list[list[dict[str, np.ndarray]]]:
            runs = encoder.tokenization.encode(request.query, request.passages, "truncate").runs
            ordered = sorted(runs, key=lambda run: len(run.ids))
            groups = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
            feeds = [runner.feed(group) for group in groups]  # a group of several is padded to its longest
            work = [int(feed["input_ids"].size) for feed in feeds]
            return share_out(feeds, work, vcpus)

        return prepare

    def run_share(share: list[dict[str, np.ndarray]]) -> None:
        for feed in share:
            session.run(None, feed)

    def run(shares: list[list[dict[str, np.ndarray]]]) -> float:
        started = time.perf_counter()
        if pool is None:
            run_share(shares[0])
        else:
            for future in [pool.submit(run_share, share) for share in shares]:
                future.result()
        return time.perf_counter() - started

    if batch_sizes is None:
        return {"alone": (preparer(1), run)}
    return {f"batches of {size}": (preparer(size), run) for size in batch_sizes}


@functools.cache
def _tokenization(model: Path) -> Any:
    from reranker.engine import CrossEncoder

    return CrossEncoder.load(model).tokenization


def tokens_per_pair(model: Path, requests: list[Any]) -> float:
    """The median tokens of a pair (query and passage, special tokens included, cut at the model's limit)."""
    tokenization = _tokenization(model)
    lengths = [
        len(run.ids)
        for request in requests
        for run in tokenization.encode(request.query, request.passages, "truncate").runs
    ]
    return float(statistics.median(lengths))


def variants(job: dict[str, Any]) -> dict[str, Contender] | None:
    """The contender's variants by name (one, but for the batched bound: one per batch size); None: n/a."""
    model, vcpus, kind = Path(job["model"]), int(job["vcpus"]), job["contender"]
    if kind == "ours":
        return {"as configured": _ours(model, vcpus)}
    if kind in ("flashrank", "flashrank-1-thread"):
        return {"as configured": _flashrank(model, one_thread=kind == "flashrank-1-thread")}
    if kind == "bound":
        return _bound(model, vcpus, None)
    if kind == "batched-bound":
        return _bound(model, vcpus, [int(size) for size in job["batch_sizes"]])
    if kind == "batched-floor":
        return _bound(model, vcpus, [int(size) for size in job["batch_sizes"]], exact=False)
    raise SystemExit(f"unknown contender {kind!r}; known: {', '.join(CONTENDERS)}")


def _time(contender: Contender, warm_up: Any, timed: list[Any]) -> list[float]:
    prepare, run = contender
    run(prepare(warm_up))  # arenas, caches, thread pools
    samples = []
    for request in timed:
        prepared = prepare(request)
        time.sleep(PAUSE_SECONDS)
        samples.append(run(prepared))
    return samples


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Per distribution and size: one warm-up request, then ``trials`` timed ones (seconds each).

    A contender with several variants (the batched bound's batch sizes) times each and keeps the one with
    the lowest median, named in "variant".
    """
    _imports()
    from tools.fixture_model.length_mix import requests

    made = variants(job)
    if made is None:
        return {"available": False}
    timings: dict[str, dict[str, list[float]]] = {}
    chosen: dict[str, dict[str, str]] = {}
    tokens: dict[str, dict[str, float]] = {}
    for name in job["distributions"]:
        timings[name], chosen[name], tokens[name] = {}, {}, {}
        for size in job["sizes"]:
            warm_up, *timed = requests(name, job["trials"] + 1, size, seed=job["seed"])
            by_variant = {label: _time(contender, warm_up, timed) for label, contender in made.items()}
            best = min(by_variant, key=lambda label: statistics.median(by_variant[label]))
            timings[name][str(size)], chosen[name][str(size)] = by_variant[best], best
            if job["contender"] == "bound":  # one contender reports it; the requests are the same in all
                tokens[name][str(size)] = tokens_per_pair(Path(job["model"]), timed)
    return {"available": True, "timings": timings, "variant": chosen, "tokens_per_pair": tokens}


def main(argv: list[str]) -> int:
    print(json.dumps(measure(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
