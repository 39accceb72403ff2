"""A request of short runs runs them one at a time, whatever ENGINE_PARALLEL_RUNS; others use every worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from reranker.engine import CrossEncoder, EngineOptions
from reranker.model_files import find_onnx_file
from reranker.onnx_runs import OnnxRunner, session_options
from reranker.run_time import RunTime
from reranker.tokenization import PairInput
from tests.models import fixture_model
from tools.fixture_model.corpus import CorpusGenerator


def test_nothing_is_known_until_enough_tokens_have_run() -> None:
    measured = RunTime(min_tokens=100)
    measured.observe(0.001, 60)
    assert measured.seconds_per_token() is None
    measured.observe(0.003, 40)
    assert measured.seconds_per_token() == pytest.approx(
        (0.001 * 0.5 ** (1 / 64) + 0.003) / (60 * 0.5 ** (1 / 64) + 40)
    )
    measured.observe(0.0, 10)  # a run too quick for the clock teaches nothing
    measured.observe(0.001, 0)
    assert measured.seconds_per_token() == pytest.approx(0.004 / 100, rel=0.02)


def test_recent_runs_outweigh_old_ones() -> None:
    measured = RunTime(half_life=4, min_tokens=1)
    for _ in range(50):
        measured.observe(0.010, 10)  # 1 ms a token
    for _ in range(20):
        measured.observe(0.001, 10)  # the load went away: 0.1 ms a token
    per_token = measured.seconds_per_token()
    assert per_token is not None and per_token < 0.0002


def test_observations_from_many_threads_are_all_counted() -> None:
    measured = RunTime(half_life=10**9, min_tokens=1)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: measured.observe(0.002, 2), range(4000)))
    assert measured.seconds_per_token() == pytest.approx(0.001)


def _runner(min_run_seconds: float) -> OnnxRunner:
    onnx = ort.InferenceSession(
        str(find_onnx_file(fixture_model("int8"))), session_options(1), providers=["CPUExecutionProvider"]
    )
    return OnnxRunner(
        onnx,
        pad_id=0,
        schedule="single",
        batch_size=1,
        parallel_runs=2,
        parallel_min_run_seconds=min_run_seconds,
    )


def _threads_of(runner: OnnxRunner, runs: list[PairInput]) -> tuple[set[str], dict[int, np.ndarray]]:
    threads: set[str] = set()
    infer = runner.infer

    def recording(*args: object, **kwargs: object) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return infer(*args, **kwargs)  # type: ignore[arg-type]

    runner.infer = recording  # type: ignore[method-assign]
    logits = {batch[0].passage: batch_logits for batch, batch_logits in runner.run(runs)}
    return threads, logits


def _request_runs(seed: int = 21, passages: int = 12) -> list[PairInput]:
    request = CorpusGenerator(seed=seed).request(passages)
    return (
        CrossEncoder.load(fixture_model("int8"))
        .tokenization.encode(request.query, request.passages, "truncate")
        .runs
    )


@pytest.mark.parametrize(
    ("seconds_per_token", "in_parallel"),
    [(None, True), (1e-9, False), (1.0, True)],  # not measured yet; measured quick; measured slow
)
def test_only_requests_of_long_enough_runs_use_the_workers(
    seconds_per_token: float | None, in_parallel: bool
) -> None:
    # Given a runner with two workers that runs a request in parallel only if its runs average 400 us or more
    runner = _runner(400e-6)
    if seconds_per_token is not None:
        runner.run_time.observe(seconds_per_token * 1000, 1000)
    runs = _request_runs()
    serial = _runner(0.0)
    serial._pool = None  # the reference: one pair at a time on the calling thread
    # When it runs a request's pairs
    threads, logits = _threads_of(runner, runs)
    # Then they run on the workers only where the runs are long enough, with the same logits either way
    assert all(name.startswith("onnx-run") for name in threads) is in_parallel
    assert (threads == {threading.current_thread().name}) is not in_parallel
    _, expected = _threads_of(serial, runs)
    assert logits.keys() == expected.keys()
    assert all(np.array_equal(logits[passage], expected[passage]) for passage in expected)


def test_the_engine_learns_its_run_time_from_its_own_requests() -> None:
    encoder = CrossEncoder.load(
        fixture_model("int8"), EngineOptions(parallel_runs=2, parallel_min_run_us=10**6)
    )
    assert encoder.runner.run_time.seconds_per_token() is None
    request = CorpusGenerator(seed=22).request(40)
    first = encoder.score(request.query, request.passages).scores
    # Its runs now measured (far under the 1 s it asks of a run), the next request runs one pair at a time
    assert encoder.runner.run_time.seconds_per_token() is not None
    assert not encoder.runner.in_parallel(list(encoder.runner.batches(_request_runs(22, 40))))
    assert encoder.score(request.query, request.passages).scores == first
