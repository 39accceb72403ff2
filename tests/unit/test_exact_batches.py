"""Exact batches: every int8 family's rewritten graph gives each pair of a padded batch, bit for bit, the logits
the pair gets alone through the engine's per-pair session; graphs the rewrite does not understand are refused."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from reranker.engine import CrossEncoder, EngineOptions
from reranker.exact_batches import ExactBatchesUnsupported, exact_batch_graph
from reranker.model_files import find_onnx_file
from reranker.onnx_wire import parse_model
from reranker.tokenization import PairInput
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_model
from tools.fixture_model.corpus import load_words

# Short enough to keep the 12-layer fixtures quick, long enough that truncation is exercised.
MAX_LENGTH = 48
WORDS = load_words()[:2000]


@functools.cache
def encoder(family: str, max_length: int = MAX_LENGTH) -> CrossEncoder:
    return CrossEncoder.load(
        fixture_model("int8", family), EngineOptions(exact_batches=True, max_length=max_length)
    )


def runs_of(engine: CrossEncoder, query: str, passages: list[str]) -> list[PairInput]:
    return engine.tokenization.encode(query, passages, "truncate").runs


@functools.cache
def per_pair_engine(family: str) -> CrossEncoder:
    """The engine as it loads without exact batches: the reference every batched row must equal."""
    return CrossEncoder.load(fixture_model("int8", family))


def alone(engine: CrossEncoder, runs: list[PairInput]) -> list[np.ndarray]:
    """Each pair's logits run alone, through the per-pair session of an engine loaded without exact batches."""
    reference = per_pair_engine(engine.name)
    return [reference.runner.infer([run])[0] for run in runs]


def assert_exact(engine: CrossEncoder, runs: list[PairInput]) -> None:
    batched = engine.runner.infer_exact_batch(runs)
    expected = alone(engine, runs)
    # The per-pair session of an engine with exact batches is the engine's usual one, bit for bit.
    assert all(
        np.array_equal(engine.runner.infer([run])[0], row) for run, row in zip(runs, expected, strict=True)
    )
    assert batched.shape == (len(runs), *expected[0].shape)
    differing = [index for index, row in enumerate(expected) if not np.array_equal(batched[index], row)]
    assert not differing, f"pairs {differing} of lengths {[len(runs[i].ids) for i in differing]} differ"


passage_text = st.one_of(
    st.just(""),
    st.sampled_from(WORDS),  # one word: a pair of a handful of tokens
    st.integers(2, 60)
    .flatmap(lambda count: st.lists(st.sampled_from(WORDS), min_size=count, max_size=count))
    .map(" ".join),  # up to past MAX_LENGTH: truncated
)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_int8_family_gets_an_exact_batch_graph(family: str) -> None:
    engine = encoder(family)
    assert engine.runner.batch_session is not None, engine.exact_batches_refused
    assert engine.describe()["exact_batches"] is True


@pytest.mark.parametrize("family", FAMILY_NAMES)
@settings(max_examples=12, deadline=None)
@given(
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
    passages=st.lists(passage_text, min_size=1, max_size=10),
    same_length=st.booleans(),
)
def test_each_pair_of_a_padded_batch_scores_as_alone(
    family: str, query: str, passages: list[str], same_length: bool
) -> None:
    engine = encoder(family)
    if same_length:  # every row as long as the first: a batch without padding
        passages = [passages[0]] * len(passages)
    assert_exact(engine, runs_of(engine, query, passages))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pairs_cut_at_the_model_limit_score_as_alone_beside_short_ones(family: str) -> None:
    engine = encoder(family, 512)
    long_text = " ".join(WORDS[:700])
    runs = runs_of(engine, "where is the answer", [long_text, "yes", "", " ".join(WORDS[700:740])])
    assert len(runs[0].ids) == engine.max_length
    assert_exact(engine, runs)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_naive_padded_batch_through_the_original_graph_is_not_exact(family: str) -> None:
    """The teeth of the tests above: the original graph's per-tensor quantization mixes the pairs."""
    engine = encoder(family)
    passages = [
        " ".join(WORDS[index : index + length]) for index, length in enumerate((1, 3, 9, 30, 2, 44, 5, 17))
    ]
    runs = runs_of(engine, "how far is the moon", passages)
    naive = engine.runner.infer(runs)  # padded to the longest, through the per-pair session
    expected = alone(engine, runs)
    assert any(not np.array_equal(naive[index], row) for index, row in enumerate(expected))
    assert_exact(engine, runs)


def test_weights_quantized_per_channel_batch_exactly_too(tmp_path: Path) -> None:
    """quantize_dynamic's per_channel option: a weight scale per column, the rewrite's other multiplier path."""
    folder = tmp_path / MODEL_NAME
    shutil.copytree(fixture_model("int8"), folder)
    quantize_dynamic(
        find_onnx_file(fixture_model("fp32")),
        find_onnx_file(folder),
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    engine = CrossEncoder.load(folder, EngineOptions(exact_batches=True))
    reference = CrossEncoder.load(folder)
    passages = ["", "moon", " ".join(WORDS[:30]), " ".join(WORDS[30:200]), " ".join(WORDS[200:207])]
    runs = runs_of(engine, "how far is the moon", passages)
    batched = engine.runner.infer_exact_batch(runs)
    assert all(
        np.array_equal(batched[index], reference.runner.infer([run])[0]) for index, run in enumerate(runs)
    )


# --- what the rewrite refuses ------------------------------------------------------------------------


def test_an_fp32_graph_has_no_quantized_matmul_to_rewrite() -> None:
    model = find_onnx_file(fixture_model("fp32")).read_bytes()
    with pytest.raises(ExactBatchesUnsupported, match="no dynamically quantized matmul"):
        exact_batch_graph(model)


def test_the_wire_reader_writes_an_unchanged_graph_back_byte_for_byte() -> None:
    model = find_onnx_file(fixture_model("int8")).read_bytes()
    graph = parse_model(model)
    assert graph.to_bytes(graph.nodes, []) == model
    assert (
        onnx.load_from_string(graph.to_bytes(graph.nodes, [])).graph.node[0].op_type == graph.nodes[0].op_type
    )


def _int8_graph_with_an_unknown_op(target: Path) -> None:
    """A nano-vocabulary int8 model with an op the rewrite has not proven row-wise (Sin) before its matmul."""
    rng = np.random.default_rng(0)
    embeddings = numpy_helper.from_array(rng.normal(size=(30522, 8)).astype(np.float32), "embeddings")
    weights = numpy_helper.from_array(rng.normal(size=(8, 1)).astype(np.float32), "weights")
    first = numpy_helper.from_array(np.array(0, np.int64), "first")
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["embedded"]),
        helper.make_node("Sin", ["embedded"], ["waved"]),
        helper.make_node("Gather", ["waved", "first"], ["pooled"], axis=1),
        helper.make_node("MatMul", ["pooled", "weights"], ["logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])
    graph = helper.make_graph(nodes, "unknown_op", inputs, [output], [embeddings, weights, first])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fp32 = target.with_suffix(".fp32.onnx")
    onnx.save_model(model, fp32)
    quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    fp32.unlink()


def test_a_graph_with_an_op_not_known_row_wise_is_refused_and_its_pairs_run_alone(tmp_path: Path) -> None:
    folder = tmp_path / MODEL_NAME
    shutil.copytree(fixture_model("int8"), folder)
    _int8_graph_with_an_unknown_op(find_onnx_file(folder))
    with pytest.raises(ExactBatchesUnsupported, match=r"ai\.onnx\.Sin"):
        exact_batch_graph(find_onnx_file(folder).read_bytes())
    engine = CrossEncoder.load(folder, EngineOptions(exact_batches=True))
    assert engine.quantized is True
    assert engine.runner.batch_session is None
    assert "Sin" in (engine.exact_batches_refused or "")
    assert engine.describe()["exact_batches"] is False
    assert engine.schedule == "single"
    assert engine.score("a query", ["one passage", "another, longer passage"]).complete
    with pytest.raises(RuntimeError, match="no exact-batch session"):
        engine.runner.infer_exact_batch(runs_of(engine, "a query", ["one passage"]))


def test_exact_batches_are_off_unless_asked_for() -> None:
    engine = CrossEncoder.load(fixture_model("int8"))
    assert engine.runner.batch_session is None
    assert engine.exact_batches_refused is None
