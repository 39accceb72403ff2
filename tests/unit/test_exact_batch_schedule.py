"""The exact_batches schedule: planned runs keep every pair's logit on its own passage, windows and deadlines work.

Every int8 family runs through its real exact-batch graph (exact_batches.py) and must score every passage bit for
bit as the single schedule does. Beside it, a graph whose padded batches are exact by construction (the masked
sum of the ids: integer sums, exact in any order) tests the scheduler alone, and the int8 fixtures' own session
stands in for a batched graph where only the plan's bookkeeping is under test (not exact: compared with runs
alone only where a plan holds no batch).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from reranker.config import Settings
from reranker.engine import CrossEncoder, EngineOptions
from reranker.model_files import load_tokenizer
from reranker.onnx_runs import OnnxRunner, resolve_schedule
from reranker.run_costs import RunCosts
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_model
from tests.run_cost_shapes import NANO_LIKE as BATCHES_PAY  # batches of short pairs always pay
from tools.fixture_model.__main__ import ONNX_FILE
from tools.fixture_model.corpus import CorpusGenerator


def write_masked_sum_model(model_dir: Path) -> None:
    """logit = 1e-5 * sum of the ids under the attention mask: the same for a pair alone or in any padded batch."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids", "mask"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "scale"], ["logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["b", "s"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(
        nodes,
        "masked_sum",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1])],
        [
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, model_dir / ONNX_FILE)


@pytest.fixture(scope="module")
def masked_sum_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("masked") / MODEL_NAME
    shutil.copytree(fixture_model("int8"), target)
    write_masked_sum_model(target)
    return target


def batching(
    model_dir: Path,
    options: EngineOptions | None = None,
    *,
    costs: RunCosts | None = BATCHES_PAY,
    stand_in: bool = True,
) -> CrossEncoder:
    """The model on the exact_batches schedule with the given costs (None: measured), its batches run on its
    real exact-batch graph, or with ``stand_in`` on its own session."""
    options = options or EngineOptions()
    encoder = CrossEncoder.load(model_dir, dataclasses.replace(options, exact_batches=not stand_in))
    batch_session = encoder.runner.session if stand_in else encoder.runner.batch_session
    assert batch_session is not None, encoder.exact_batches_refused
    _, pad_id = load_tokenizer(model_dir, options.max_length)
    encoder.schedule = "exact_batches"
    encoder.runner = OnnxRunner(
        encoder.runner.session,
        pad_id=pad_id,
        schedule="exact_batches",
        batch_size=options.exact_batch_max_pairs,
        parallel_runs=options.parallel_runs,
        batch_session=batch_session,
        exact_batch_max_tokens=min(options.exact_batch_max_tokens, encoder.max_length),
        costs=costs,
    )
    return encoder


def mixed_request(seed: int, count: int) -> tuple[str, list[str]]:
    """Short passages (a few words) and long ones (past the batch limit), shuffled."""
    request = CorpusGenerator(seed=seed).request(count)
    passages = [
        " ".join(text.split()[: 3 + index % 9]) if index % 4 else text
        for index, text in enumerate(request.passages)
    ]
    return request.query, passages


def planned_batches(encoder: CrossEncoder, query: str, passages: list[str]) -> list[int]:
    runs = encoder.tokenization.encode(query, passages, "truncate").runs
    return [len(batch) for batch in encoder.runner.batches(runs)]


# --- every pair's logit stays on its passage ------------------------------------------------------------------


@pytest.mark.parametrize("parallel_runs", [1, 2, 3])
def test_planned_batches_give_every_passage_the_logit_it_gets_alone(
    masked_sum_dir: Path, parallel_runs: int
) -> None:
    # Given a request of short and long passages, and the same model on the single schedule
    query, passages = mixed_request(seed=21, count=60)
    alone = CrossEncoder.load(masked_sum_dir, EngineOptions(schedule="single"))
    planned = batching(masked_sum_dir, EngineOptions(parallel_runs=parallel_runs))
    # When it is scored in planned batches
    sizes = planned_batches(planned, query, passages)
    assert max(sizes) > 1 and 1 in sizes  # batches and runs alone
    got = planned.score(query, passages, with_logits=True)
    expected = alone.score(query, passages, with_logits=True)
    # Then every passage has, bit for bit, its own logit and score
    assert got.logits == expected.logits
    assert got.scores == expected.scores
    assert got.windows == expected.windows == len(passages) and got.tokens == expected.tokens


def test_window_mode_keeps_each_passages_best_window(masked_sum_dir: Path) -> None:
    query, passages = mixed_request(seed=22, count=30)
    passages[5] = "a long passage " * 600  # several windows, each run alone
    options = EngineOptions(long_documents="window", window_max_per_passage=4)
    got = batching(masked_sum_dir, options).score(query, passages, with_logits=True)
    alone = CrossEncoder.load(masked_sum_dir, dataclasses.replace(options, schedule="single"))
    expected = alone.score(query, passages, with_logits=True)
    assert got.logits == expected.logits and got.windows == expected.windows > len(passages)


@pytest.mark.parametrize("parallel_runs", [1, 2])
def test_a_deadline_leaves_whole_runs_unscored_and_the_scored_ones_right(
    masked_sum_dir: Path, parallel_runs: int
) -> None:
    # Given a plan of batches, and a deadline that passes after three runs have started
    query, passages = mixed_request(seed=23, count=40)
    encoder = batching(masked_sum_dir, EngineOptions(parallel_runs=parallel_runs))
    runs = encoder.tokenization.encode(query, passages, "truncate").runs
    plan = list(encoder.runner.batches(runs))
    checks = {"count": 0}

    def stop_after_three() -> bool:
        checks["count"] += 1
        return checks["count"] > 3

    report = encoder.score(query, passages, should_stop=stop_after_three, with_logits=True)
    # Then exactly the passages of the first three runs are scored, each with its own logit
    started = {run.passage for batch in plan[:3] for run in batch}
    assert {index for index, score in enumerate(report.scores) if score is not None} == started
    alone = CrossEncoder.load(masked_sum_dir, EngineOptions(schedule="single")).score(
        query, passages, with_logits=True
    )
    assert report.logits is not None and alone.logits is not None
    assert all(report.logits[index] == alone.logits[index] for index in started)
    assert not report.complete


def test_requests_with_fewer_than_two_short_pairs_never_measure_costs(masked_sum_dir: Path) -> None:
    encoder = batching(masked_sum_dir, costs=None)
    encoder.score("q", ["one short passage"])
    encoder.score("q", ["word " * 400, "word " * 300, "short"])
    assert encoder.runner.measured_costs is None
    assert encoder.describe()["run_costs"] is None


def test_the_first_request_that_could_batch_measures_the_costs_once(masked_sum_dir: Path) -> None:
    encoder = batching(masked_sum_dir, costs=None)
    encoder.score("q", ["one", "two", "three"])
    costs = encoder.runner.measured_costs
    assert costs is not None and costs.max_tokens == 64
    assert all(
        value >= 0 and np.isfinite(value)
        for value in (costs.single_base, costs.single_per_token, costs.batch_base, costs.batch_per_row)
    )
    encoder.score("q", ["four", "five"])
    assert encoder.runner.measured_costs is costs
    described = encoder.describe()["run_costs"]
    assert isinstance(described, dict) and described["max_tokens"] == 64


# --- every int8 family through its real exact-batch graph ------------------------------------------------------


@pytest.mark.parametrize("parallel_runs", [1, 2])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_exact_batches_give_every_passage_bit_for_bit_its_score_alone(
    family: str, parallel_runs: int
) -> None:
    # Given a request of short and long passages, planned into exact batches and runs alone
    query, passages = mixed_request(seed=26, count=48)
    exact = batching(
        fixture_model("int8", family), EngineOptions(parallel_runs=parallel_runs), stand_in=False
    )
    sizes = planned_batches(exact, query, passages)
    assert max(sizes) > 1 and 1 in sizes
    # Then every passage's logit and score are, bit for bit, those of the single schedule
    alone = CrossEncoder.load(fixture_model("int8", family), EngineOptions(schedule="single"))
    got = exact.score(query, passages, with_logits=True)
    expected = alone.score(query, passages, with_logits=True)
    assert got.logits == expected.logits
    assert got.scores == expected.scores


def test_exact_batches_in_window_mode_and_under_a_deadline() -> None:
    query, passages = mixed_request(seed=27, count=30)
    passages[3] = "a long passage about airships " * 200
    options = EngineOptions(long_documents="window", window_max_per_passage=3)
    exact = batching(fixture_model("int8"), options, stand_in=False)
    alone = CrossEncoder.load(fixture_model("int8"), dataclasses.replace(options, schedule="single"))
    expected = alone.score(query, passages, with_logits=True)
    assert exact.score(query, passages, with_logits=True).logits == expected.logits
    checks = {"count": 0}

    def stop_after_two() -> bool:
        checks["count"] += 1
        return checks["count"] > 2

    stopped = exact.score(query, passages, should_stop=stop_after_two, with_logits=True)
    assert stopped.logits is not None and expected.logits is not None
    scored = [index for index, logit in enumerate(stopped.logits) if logit is not None]
    assert scored and len(scored) < len(passages)
    assert all(stopped.logits[index] == expected.logits[index] for index in scored)


def test_the_exact_schedule_as_the_settings_ask_for_it_measures_its_costs_and_stays_exact() -> None:
    settings = Settings.from_env({"ENGINE_SCHEDULE": "exact_batches", "ENGINE_PARALLEL_RUNS": "1"})
    options = EngineOptions.from_settings(settings)
    assert options.exact_batches is True
    encoder = CrossEncoder.load(fixture_model("int8"), options)
    assert encoder.schedule == "exact_batches" and encoder.describe()["exact_batches"] is True
    query, passages = mixed_request(seed=28, count=40)
    got = encoder.score(query, passages, with_logits=True)
    assert encoder.runner.measured_costs is not None
    alone = CrossEncoder.load(fixture_model("int8"), EngineOptions(schedule="single"))
    assert got.logits == alone.score(query, passages, with_logits=True).logits
    # and by default (auto) an int8 model builds no batched graph and runs each pair alone
    default = CrossEncoder.load(fixture_model("int8"), EngineOptions.from_settings(Settings.from_env({})))
    assert default.schedule == "single" and default.runner.batch_session is None


# --- the int8 fixtures, with their own session standing in for a batched graph ----------------------------------


@pytest.mark.parametrize("family", [MODEL_NAME, "rank-T5-flan", "ms-marco-MultiBERT-L-12"])
def test_a_plan_without_batches_is_the_single_schedule_bit_for_bit(family: str) -> None:
    query, passages = mixed_request(seed=24, count=25)
    alone = CrossEncoder.load(fixture_model("int8", family), EngineOptions(schedule="single"))
    one_pair_batches = batching(fixture_model("int8", family), EngineOptions(exact_batch_max_pairs=1))
    assert set(planned_batches(one_pair_batches, query, passages)) == {1}
    got = one_pair_batches.score(query, passages, with_logits=True)
    assert got.logits == alone.score(query, passages, with_logits=True).logits


def test_int8_batches_carry_each_rows_logit_to_its_passage() -> None:
    # Given the nano in planned batches through its own (not exact) session
    query, passages = mixed_request(seed=25, count=30)
    encoder = batching(fixture_model("int8"))
    runs = encoder.tokenization.encode(query, passages, "truncate").runs
    # Then each passage's logit is its row's in the batch the plan put it in
    expected: dict[int, float] = {}
    for batch in encoder.runner.batches(runs):
        logits = encoder.runner.infer(batch)
        for row, run in enumerate(batch):
            expected[run.passage] = float(logits[row, 0])
    got = encoder.score(query, passages, with_logits=True).logits
    assert got == [expected[index] for index in range(len(passages))]


def test_the_probe_fits_costs_on_the_nano() -> None:
    encoder = batching(fixture_model("int8"), costs=None)
    encoder.score("q", ["warm", "up"])  # measures
    costs = encoder.runner.measured_costs
    assert costs is not None
    assert costs.single(16) > 0 and costs.batch(8, 16) > 0


# --- which schedule a model gets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "quantized", "exact", "resolved"),
    [
        ("auto", True, True, "exact_batches"),
        ("auto", True, False, "single"),
        ("auto", False, True, "sorted_batches"),
        ("auto", False, False, "sorted_batches"),
        ("exact_batches", True, False, "single"),
        ("exact_batches", False, False, "single"),
        ("exact_batches", False, True, "exact_batches"),
        ("single", True, True, "single"),
        ("sorted_batches", True, True, "sorted_batches"),
    ],
)
def test_the_schedule_resolves_to_one_the_model_can_run(
    asked: str, quantized: bool, exact: bool, resolved: str
) -> None:
    assert resolve_schedule(asked, quantized=quantized, exact_batches=exact) == resolved  # type: ignore[arg-type]


def test_an_int8_model_without_a_batched_graph_runs_each_pair_alone() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"), EngineOptions(schedule="exact_batches"))
    assert encoder.schedule == "single" and encoder.runner.batch_session is None


def test_the_exact_schedule_without_a_batch_session_is_refused() -> None:
    session = CrossEncoder.load(fixture_model("int8")).runner.session
    with pytest.raises(ValueError, match="batch session"):
        OnnxRunner(session, pad_id=0, schedule="exact_batches", batch_size=8, parallel_runs=1)
