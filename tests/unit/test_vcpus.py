"""Every vCPU: thread spinning, and the request's tail run by a session with more intra-op threads."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from reranker.config import Settings
from reranker.engine import CrossEncoder, EngineOptions
from reranker.model_files import find_onnx_file
from reranker.onnx_runs import OnnxRunner, request_fits_the_tail, session_options
from tests.models import FAMILY_NAMES, fixture_model
from tools.fixture_model.corpus import CorpusGenerator

SPINNING = "session.intra_op.allow_spinning"


def session(kind: str, threads: int = 1) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(find_onnx_file(fixture_model(kind))), session_options(threads), providers=["CPUExecutionProvider"]
    )


# --- the scheduling decision ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parallel_runs", "tail_threads", "fits"),
    [(1, 2, []), (2, 2, [1]), (3, 2, [1]), (4, 2, [1, 2]), (6, 2, [1, 2, 3]), (6, 3, [1, 2])],
)
def test_a_request_runs_on_the_tail_session_only_when_every_run_finds_idle_vcpus(
    parallel_runs: int, tail_threads: int, fits: list[int]
) -> None:
    assert [n for n in range(1, 20) if request_fits_the_tail(n, parallel_runs, tail_threads)] == fits


def _runner_with_tail(parallel_runs: int) -> tuple[OnnxRunner, ort.InferenceSession, ort.InferenceSession]:
    # Two different models make the session each batch ran on visible in its logits.
    main, tail = session("int8"), session("fp32")
    runner = OnnxRunner(
        main, pad_id=0, schedule="single", batch_size=1, parallel_runs=parallel_runs, tail_session=tail
    )
    return runner, main, tail


def test_a_request_that_fits_the_tail_runs_every_pair_on_the_tail_session() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"))
    request = CorpusGenerator(seed=5).request(2)
    runs = encoder.tokenization.encode(request.query, request.passages, "truncate").runs
    runner, _, tail = _runner_with_tail(parallel_runs=4)  # 2 runs x 2 threads: 4 vCPUs
    ran = [(batch, logits) for batch, logits in runner.run(runs)]
    assert len(ran) == 2
    assert all(np.array_equal(logits, runner.infer(batch, tail)) for batch, logits in ran)


def test_a_bigger_request_runs_on_the_main_session_longest_pairs_first() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"))
    request = CorpusGenerator(seed=5).request(9)
    runs = encoder.tokenization.encode(request.query, request.passages, "truncate").runs
    runner, main, tail = _runner_with_tail(parallel_runs=3)
    ran = list(runner.run(runs))
    lengths = [len(batch[0].ids) for batch, _ in ran]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(batch[0].passage for batch, _ in ran) == list(range(9))
    for batch, logits in ran:
        assert np.array_equal(logits, runner.infer(batch, main))
        assert not np.array_equal(logits, runner.infer(batch, tail))


def test_one_worker_runs_the_pairs_in_input_order() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"))
    request = CorpusGenerator(seed=5).request(9)
    runs = encoder.tokenization.encode(request.query, request.passages, "truncate").runs
    runner = OnnxRunner(session("int8"), pad_id=0, schedule="single", batch_size=1, parallel_runs=1)
    assert [batch[0].passage for batch, _ in runner.run(runs)] == list(range(9))


def test_without_a_tail_session_every_batch_runs_on_the_main_one() -> None:
    main = session("int8")
    runner = OnnxRunner(main, pad_id=0, schedule="single", batch_size=1, parallel_runs=2)
    assert runner.session_for(1) is main and runner.session_for(5) is main


# --- what the engine builds from its options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "tail_threads"),
    [
        (EngineOptions(), None),
        (EngineOptions(parallel_runs=2), None),  # the default: off
        (EngineOptions(parallel_runs=1, tail_intra_op_threads=2), None),  # one vCPU: no tail to fill
        (
            EngineOptions(parallel_runs=2, intra_op_threads=2, tail_intra_op_threads=2),
            None,
        ),  # no more threads
        (EngineOptions(parallel_runs=2, tail_intra_op_threads=2), 2),
        (EngineOptions(parallel_runs=6, tail_intra_op_threads=3, allow_spinning=False), 3),
    ],
)
def test_a_tail_session_is_built_only_when_it_has_more_threads(
    options: EngineOptions, tail_threads: int | None
) -> None:
    encoder = CrossEncoder.load(fixture_model("int8"), options)
    tail = encoder.runner.tail_session
    assert options.tail_threads == tail_threads
    if tail_threads is None:
        assert tail is None
        return
    assert tail is not None
    tail_options = tail.get_session_options()
    assert tail_options.intra_op_num_threads == tail_threads
    assert encoder.runner.session.get_session_options().intra_op_num_threads == options.intra_op_threads
    spinning = tail_options.get_session_config_entry(SPINNING) if not options.allow_spinning else None
    assert spinning == (None if options.allow_spinning else "0")


def test_spinning_is_turned_off_only_when_asked() -> None:
    assert session_options(2, allow_spinning=False).get_session_config_entry(SPINNING) == "0"
    with pytest.raises(RuntimeError):  # not set at all: onnxruntime's default (spinning) holds
        session_options(2).get_session_config_entry(SPINNING)
    encoder = CrossEncoder.load(fixture_model("int8"), EngineOptions(allow_spinning=False))
    assert encoder.runner.session.get_session_options().get_session_config_entry(SPINNING) == "0"


@pytest.mark.parametrize("kind", ["int8", "fp32"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_scores_with_a_tail_session_are_bit_identical(kind: str, family: str) -> None:
    plain = CrossEncoder.load(fixture_model(kind, family), EngineOptions(parallel_runs=2))
    tailed = CrossEncoder.load(
        fixture_model(kind, family), EngineOptions(parallel_runs=2, tail_intra_op_threads=2)
    )
    assert tailed.runner.tail_session is not None
    for size in (1, 2, 7):
        request = CorpusGenerator(seed=size).request(size)
        expected = plain.score(request.query, request.passages, with_logits=True)
        got = tailed.score(request.query, request.passages, with_logits=True)
        assert (got.scores, got.logits) == (expected.scores, expected.logits)


def test_the_engine_options_follow_the_settings() -> None:
    settings = Settings.from_env(
        {
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "ENGINE_MAX_LENGTH": "256",
            "ENGINE_SCHEDULE": "sorted_batches",
            "ENGINE_BATCH_SIZE": "4",
            "ENGINE_EXACT_BATCH_MAX_PAIRS": "12",
            "ENGINE_EXACT_BATCH_MAX_TOKENS": "48",
            "ENGINE_EXACT_BATCH_MIN_GAIN_PERCENT": "20",
            "ENGINE_COST_PROBE_MS": "5",
            "ORT_INTRA_OP_THREADS": "2",
            "ENGINE_TAIL_INTRA_OP_THREADS": "3",
            "LONG_DOCUMENTS": "window",
            "WINDOW_MAX_PER_PASSAGE": "3",
            "WINDOW_OVERLAP_TOKENS": "16",
        }
    )
    options = EngineOptions.from_settings(settings)
    assert options != EngineOptions()
    assert dataclasses.asdict(options) == {
        "max_length": 256,
        "schedule": "sorted_batches",
        "batch_size": 4,
        "exact_batch_max_pairs": 12,
        "exact_batch_max_tokens": 48,
        "exact_batch_min_gain_percent": 20,
        "cost_probe_ms": 5,
        "intra_op_threads": 2,
        "allow_spinning": False,
        "parallel_runs": 1,
        "tail_intra_op_threads": 3,
        "long_documents": "window",
        "window_max_per_passage": 3,
        "window_overlap_tokens": 16,
        "exact_batches": False,
    }


def test_the_runtime_builds_its_engine_from_every_engine_setting(model_dir: Path) -> None:
    from reranker import runtime

    environ = {
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "ENGINE_TAIL_INTRA_OP_THREADS": "2",
        "MODEL_DIR": str(model_dir),
    }
    loaded = runtime.load(environ)
    assert isinstance(loaded, runtime.Ready)
    assert loaded.engine.options == EngineOptions.from_settings(Settings.from_env(environ))
    assert loaded.engine.options.allow_spinning is False


# --- the benchmark's CPU quota (bench/cpu_quota.py) -----------------------------------------------------------


def test_the_benchmark_quota_group_holds_the_quota_and_is_removed_afterwards() -> None:
    from bench import cpu_quota

    with pytest.raises(ValueError, match="positive"):
        cpu_quota._quota_us(0)
    v1 = cpu_quota._v1_parent()
    if v1 is None or not os.access(v1, os.W_OK):
        pytest.skip("no writable cgroup v1 cpu controller here")
    with cpu_quota.quota_group(1.5, f"reranker-test-{os.getpid()}") as procs:
        group = procs.parent
        assert (group / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert (group / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert not group.exists()
