"""The engine as a plain library: loading, input feeding, scoring maths, schedules, windows, stopping early."""

from __future__ import annotations

import functools
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from reranker.engine import CrossEncoder, EngineOptions
from reranker.errors import ModelFileInvalid
from reranker.logits import logits_to_scores
from reranker.tokenization import TOKENIZE_FIRST_CHUNK_CHARS
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_model
from tools.fixture_model.__main__ import MARKER_WORD, ONNX_FILE
from tools.fixture_model.corpus import CorpusGenerator


@pytest.fixture(scope="module")
def int8() -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8"))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    target = tmp_path / "ms-marco-TinyBERT-L-2-v2"
    shutil.copytree(fixture_model("int8"), target)
    return target


# --- loading ---------------------------------------------------------------------------------------


def test_load_reports_identity_and_picks_the_per_pair_schedule_for_int8(int8: CrossEncoder) -> None:
    described = int8.describe()
    assert described["name"] == "ms-marco-TinyBERT-L-2-v2"
    assert described["onnx_file"] == ONNX_FILE
    assert len(int8.sha256) == 64
    assert int8.quantized is True
    assert int8.schedule == "single"


def test_fp32_model_gets_sorted_micro_batches() -> None:
    encoder = CrossEncoder.load(fixture_model("fp32"))
    assert encoder.quantized is False
    assert encoder.schedule == "sorted_batches"


@pytest.mark.parametrize(
    "missing",
    ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", ONNX_FILE],
)
def test_missing_file_is_named(model_copy: Path, missing: str) -> None:
    (model_copy / missing).unlink()
    with pytest.raises(ModelFileInvalid, match=missing.replace(".", r"\.")):
        CrossEncoder.load(model_copy)


@pytest.mark.parametrize("broken", ["config.json", "tokenizer.json", "tokenizer_config.json", ONNX_FILE])
def test_malformed_file_is_named(model_copy: Path, broken: str) -> None:
    (model_copy / broken).write_bytes(b"{ not what it should be")
    with pytest.raises(ModelFileInvalid, match=broken.replace(".", r"\.")):
        CrossEncoder.load(model_copy)


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelFileInvalid, match="does not exist"):
        CrossEncoder.load(tmp_path / "nowhere")


def test_other_flashrank_file_names_and_single_unknown_onnx_are_found(
    model_copy: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "ms-marco-MiniLM-L-12-v2"
    model_copy.rename(renamed)
    (renamed / ONNX_FILE).rename(renamed / "flashrank-MiniLM-L-12-v2_Q.onnx")
    assert CrossEncoder.load(renamed).onnx_file == "flashrank-MiniLM-L-12-v2_Q.onnx"
    (renamed / "flashrank-MiniLM-L-12-v2_Q.onnx").rename(renamed / "custom.onnx")
    assert CrossEncoder.load(renamed).onnx_file == "custom.onnx"


# --- scoring maths ---------------------------------------------------------------------------------


def test_scores_are_overflow_free_and_match_the_textbook_formulas() -> None:
    single = np.array([[-1000.0], [-3.0], [0.0], [2.5], [1000.0]], dtype=np.float32)
    pairs = np.array([[0.0, 0.0], [1000.0, -1000.0], [-2.0, 3.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sigmoid = logits_to_scores(single)
        softmax = logits_to_scores(pairs)
    assert sigmoid.tolist() == pytest.approx([0.0, 1 / (1 + np.exp(3.0)), 0.5, 1 / (1 + np.exp(-2.5)), 1.0])
    assert softmax.tolist() == pytest.approx([0.5, 0.0, np.exp(3) / (np.exp(-2) + np.exp(3))])
    # Three or more columns: FlashRank's softmax column 1 over all of them.
    triples = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, -1.0], [-1000.0, 1000.0, 999.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        softmax3 = logits_to_scores(triples)
    expected = np.exp(triples[:2].astype(np.float64))
    assert softmax3[:2].tolist() == pytest.approx((expected[:, 1] / expected.sum(axis=1)).tolist())
    assert softmax3[2] == pytest.approx(1 / (1 + np.exp(-1.0)))
    for bad in (np.zeros((2, 0), dtype=np.float32), np.zeros(3, dtype=np.float32)):
        with pytest.raises(ValueError, match="logits"):
            logits_to_scores(bad)


def test_empty_passage_list_and_empty_strings(int8: CrossEncoder) -> None:
    assert int8.score("query", []).scores == []
    report = int8.score("", ["", "   ", "text"])
    assert all(isinstance(score, float) for score in report.scores)


def test_usage_counts_real_tokens_and_truncations(int8: CrossEncoder) -> None:
    long_text = "word " * 2000
    report = int8.score("a short query", ["tiny passage", long_text])
    assert report.truncated == 1
    assert report.windows == 2
    # [CLS] a short query [SEP] tiny passage [SEP] = 8 tokens; the long pair is cut at 512.
    assert report.tokens == 8 + 512


# --- schedules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_fp32_schedules_agree(batch_size: int) -> None:
    request = CorpusGenerator(seed=12).request(25)
    single = CrossEncoder.load(fixture_model("fp32"), EngineOptions(schedule="single"))
    batched = CrossEncoder.load(
        fixture_model("fp32"), EngineOptions(schedule="sorted_batches", batch_size=batch_size)
    )
    expected = single.score(request.query, list(request.passages)).scores
    got = batched.score(request.query, list(request.passages)).scores
    assert got == pytest.approx(expected, abs=1e-6)


def test_should_stop_leaves_the_rest_unscored(int8: CrossEncoder) -> None:
    calls = {"count": 0}

    def stop_after_three() -> bool:
        calls["count"] += 1
        return calls["count"] > 3

    report = int8.score("query", ["one", "two", "three", "four", "five"], should_stop=stop_after_three)
    assert report.scores[:3] == int8.score("query", ["one", "two", "three"]).scores
    assert report.scores[3:] == [None, None]
    assert not report.complete


# --- inputs the graph declares ---------------------------------------------------------------------


def write_marker_variant(model_dir: Path, *, with_token_types: bool) -> None:
    """A tiny graph that declares only input_ids (+ attention_mask): we must not feed what it lacks."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids_float"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "scale"], ["logits"]),
    ]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])]
    if with_token_types:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["b", "s"]))
    graph = helper.make_graph(
        nodes,
        "ids_only",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1])],
        [numpy_helper.from_array(np.array(0.0001, np.float32), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, model_dir / ONNX_FILE)


@pytest.mark.parametrize("with_token_types", [False, True])
def test_feeds_only_the_inputs_the_graph_declares(model_copy: Path, with_token_types: bool) -> None:
    write_marker_variant(model_copy, with_token_types=with_token_types)
    encoder = CrossEncoder.load(model_copy)
    scores = encoder.score("query", ["a passage", "another passage here"]).scores
    assert all(score is not None and 0.5 < score < 1.0 for score in scores)


def test_pad_id_comes_from_config(model_copy: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["pad_token_id"] = 7
    (model_copy / "config.json").write_text(json.dumps(config))
    encoder = CrossEncoder.load(model_copy, EngineOptions(schedule="sorted_batches"))
    pending = encoder.tokenization.encode("q", ["a", "a much longer passage"], "truncate").runs
    feed = encoder.runner.feed(pending)
    assert feed["input_ids"][0, -1] == 7


# --- long documents --------------------------------------------------------------------------------


def marker_document(position_words: int, total_words: int) -> str:
    words = ["filler"] * total_words
    words[position_words] = MARKER_WORD
    return " ".join(words)


def test_window_mode_finds_a_sentence_past_token_512_that_truncation_misses() -> None:
    # Given a model whose score is high exactly when the marker word is among the tokens it sees
    encoder = CrossEncoder.load(fixture_model("marker"), EngineOptions(window_max_per_passage=8))
    early, late = marker_document(100, 1500), marker_document(1200, 1500)
    # When scored with truncation, only the early marker is seen
    truncated = encoder.score("which airship", [early, late])
    assert truncated.scores[0] is not None and truncated.scores[0] > 0.99
    assert truncated.scores[1] is not None and truncated.scores[1] < 0.01
    # When scored in windows, both are found, and usage counts the windows scored
    windowed = encoder.score("which airship", [early, late], long_documents="window")
    assert all(score is not None and score > 0.99 for score in windowed.scores)
    assert windowed.windows > 2
    assert windowed.truncated == 0


def test_window_mode_is_bounded_and_leaves_short_passages_as_they_were(int8: CrossEncoder) -> None:
    bounded = CrossEncoder.load(fixture_model("marker"), EngineOptions(window_max_per_passage=2))
    report = bounded.score("q", [marker_document(3000, 4000), "short"], long_documents="window")
    assert report.windows == 3
    assert report.truncated == 1
    assert report.scores[0] is not None and report.scores[0] < 0.01
    texts = ["short one", "another short one"]
    assert int8.score("q", texts, long_documents="window").scores == int8.score("q", texts).scores


def test_windows_overlap_so_a_marker_on_a_boundary_is_seen() -> None:
    encoder = CrossEncoder.load(fixture_model("marker"), EngineOptions(window_overlap_tokens=64))
    for position in range(480, 560, 7):
        report = encoder.score("q", [marker_document(position, 1200)], long_documents="window")
        assert report.scores[0] is not None and report.scores[0] > 0.99, position


def test_parallel_runs_give_bit_identical_scores_and_still_stop(int8: CrossEncoder) -> None:
    parallel = CrossEncoder.load(fixture_model("int8"), EngineOptions(parallel_runs=2))
    request = CorpusGenerator(seed=13).request(30)
    assert (
        parallel.score(request.query, request.passages).scores
        == int8.score(request.query, request.passages).scores
    )
    calls = {"count": 0}

    def stop_after_four() -> bool:
        calls["count"] += 1
        return calls["count"] > 4

    stopped = parallel.score(request.query, request.passages, should_stop=stop_after_four)
    assert sum(score is not None for score in stopped.scores) == 4


# --- cutting very long passages before tokenizing ----------------------------------------------------

_PIECES = st.sampled_from(
    [
        "word",
        "token",
        "Ünïcödé",
        "東京",
        "🤖",
        "👩\u200d👩\u200d👧",
        "x" * 120,  # longer than WordPiece's 100-character word limit: one [UNK]
        "a,b.c",
        "\u0301",  # a combining accent, possibly right after a space
        "\x1c",  # a control character BERT's normalizer drops
        "\t",
        "\n",
        "[SEP]",
        "</s>",
        "Привет",
        "مرحبا",
        "東京の天気は晴れです",
        "Straße",
        "ÉCOLE",
        "▁",
    ]
)
_GAPS = st.sampled_from([" ", " ", "  ", "", "\u3000"])
_TEXTS = st.lists(st.tuples(_PIECES, _GAPS), max_size=40).map(lambda parts: "".join(a + b for a, b in parts))
_LONG_TEXTS = st.lists(st.tuples(_PIECES, _GAPS), min_size=60, max_size=250).map(
    lambda parts: "".join(a + b for a, b in parts)
)


# The families whose pipelines are cut (BERT normalizer + pre-tokenizer + WordPiece), one per distinct tokenizer:
# MiniLM-L-12 shares the nano's, the 3-logit fixture the multilingual one; T5's is never cut (checked below).
PRECUT_FAMILIES = (MODEL_NAME, "ms-marco-MultiBERT-L-12")


@pytest.mark.parametrize("family", PRECUT_FAMILIES)
@settings(max_examples=100, deadline=None)
@given(query=_TEXTS | _LONG_TEXTS, passages=st.lists(_TEXTS | _LONG_TEXTS, min_size=1, max_size=4))
def test_cutting_long_passages_never_changes_the_tokens(family: str, query: str, passages: list[str]) -> None:
    # A 32-token limit makes the 384-character cut happen often.
    encoder = _small_limit_encoder(family)
    expected = encoder.tokenization.tokenizer.encode_batch([(query, passage) for passage in passages])
    got = encoder.tokenization.encode_pairs(query, passages)
    assert [encoding.ids for encoding in got] == [encoding.ids for encoding in expected]
    assert [encoding.type_ids for encoding in got] == [encoding.type_ids for encoding in expected]
    assert [bool(e.overflowing) for e in got] == [bool(e.overflowing) for e in expected]


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("limit", [32, None])
@settings(max_examples=60, deadline=None)
@given(query=_TEXTS, passages=st.lists(_TEXTS | _LONG_TEXTS, min_size=1, max_size=5))
@example(query="", passages=["", "a", "what is it"])
def test_the_runs_are_the_tokenizers_own_pairs(
    family: str, limit: int | None, query: str, passages: list[str]
) -> None:
    # Given pairs that fit the limit whole (built from the query's and the passage's ids) and pairs that do not
    encoder = _small_limit_encoder(family) if limit else _encoder(family)
    # When the engine tokenizes them for its runs
    encoded = encoder.tokenization.encode(query, passages, "truncate")
    # Then each run is the tokenizer's own encoding of the pair, truncated where it overflows
    expected = encoder.tokenization.tokenizer.encode_batch([(query, passage) for passage in passages])
    assert [run.passage for run in encoded.runs] == list(range(len(passages)))
    assert [(run.ids, run.type_ids) for run in encoded.runs] == [(e.ids, e.type_ids) for e in expected]
    assert encoded.truncated == sum(bool(encoding.overflowing) for encoding in expected)


@functools.cache
def _encoder(family: str) -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8", family))


@functools.cache
def _small_limit_encoder(family: str = MODEL_NAME) -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8", family), EngineOptions(max_length=32))


def test_only_the_bert_wordpiece_pipelines_are_cut_before_tokenizing() -> None:
    cut = {family: _small_limit_encoder(family).tokenization.precut_chars for family in FAMILY_NAMES}
    assert cut == {family: None if family == "rank-T5-flan" else 32 * 12 for family in FAMILY_NAMES}


def test_long_passages_are_cut_before_tokenizing(int8: CrossEncoder) -> None:
    passage = "relevant words " * 5000  # 75,000 characters, far past 512 tokens
    assert int8.tokenization.precut_chars == 512 * 12
    report = int8.score("which words", [passage])
    assert report.truncated == 1 and report.tokens == 512
    full = int8.tokenization.tokenizer.encode("which words", passage)
    assert int8.tokenization.encode_pairs("which words", [passage])[0].ids == full.ids


# --- which file, and which outputs, a model folder may have ------------------------------------------


@pytest.mark.parametrize(
    ("folder", "opened", "beside"),
    [
        ("rank-T5-flan", "flashrank-rankt5_Q.onnx", "flashrank-rankt5.onnx"),
        ("ce-esci-MiniLM-L12-v2", "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx", "model.onnx"),
        ("ms-marco-MultiBERT-L-12", "flashrank-MultiBERT-L12_Q.onnx", "flashrank-MultiBERT-L12.onnx"),
        ("miniReranker_arabic_v1", "miniReranker_arabic_v1.onnx", "other.onnx"),
        ("my-own-copy", "flashrank-rankt5_Q.onnx", "notes.onnx"),
    ],
)
def test_a_folder_with_several_onnx_files_opens_the_one_flashrank_opens(
    model_copy: Path, tmp_path: Path, folder: str, opened: str, beside: str
) -> None:
    # Given a folder that holds FlashRank's file and another .onnx file that would fail to load
    renamed = tmp_path / folder
    model_copy.rename(renamed)
    (renamed / ONNX_FILE).rename(renamed / opened)
    (renamed / beside).write_bytes(b"not an onnx graph")
    # Then the engine opens FlashRank's file
    assert CrossEncoder.load(renamed).onnx_file == opened


def test_two_unknown_onnx_files_are_refused_naming_them(model_copy: Path) -> None:
    shutil.copyfile(model_copy / ONNX_FILE, model_copy / "b.onnx")
    (model_copy / ONNX_FILE).rename(model_copy / "a.onnx")
    with pytest.raises(ModelFileInvalid, match=r"a\.onnx, b\.onnx"):
        CrossEncoder.load(model_copy)


def write_output_variant(model_dir: Path, kind: str) -> None:
    """A graph whose logits cannot be scored: rank 1, zero columns (declared or only at run time), integers."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids_float"], ["mean"], axes=[1], keepdims=int(kind != "rank1")),
    ]
    initializers = []
    element, dims = TensorProto.FLOAT, ["b", 1]
    if kind == "rank1":
        nodes.append(helper.make_node("Identity", ["mean"], ["logits"]))
        dims = ["b"]
    elif kind in ("zero_columns", "zero_columns_at_run_time"):
        initializers += [
            numpy_helper.from_array(np.array([0], np.int64), "starts"),
            numpy_helper.from_array(np.array([0], np.int64), "ends"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ]
        nodes.append(helper.make_node("Slice", ["mean", "starts", "ends", "axes"], ["logits"]))
        dims = ["b", 0] if kind == "zero_columns" else ["b", "labels"]
    elif kind == "integers":
        nodes.append(helper.make_node("Cast", ["mean"], ["logits"], to=TensorProto.INT64))
        element = TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["b", "s"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    graph = helper.make_graph(
        nodes, "unscorable", inputs, [helper.make_tensor_value_info("logits", element, dims)], initializers
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, model_dir / ONNX_FILE)


@pytest.mark.parametrize("kind", ["rank1", "zero_columns", "zero_columns_at_run_time", "integers"])
def test_a_graph_whose_outputs_cannot_be_scored_is_refused_at_load_naming_the_file(
    model_copy: Path, kind: str
) -> None:
    write_output_variant(model_copy, kind)
    with pytest.raises(ModelFileInvalid, match=ONNX_FILE.replace(".", r"\.")):
        CrossEncoder.load(model_copy)


# --- tokenizing against a deadline -------------------------------------------------------------------


def test_tokenizing_stops_between_chunks_once_should_stop_says_so(int8: CrossEncoder) -> None:
    # Given 200 passages of 3 900 characters (780 000 characters) and a deadline already passed
    passages = [("word " * 780)[:3900]] * 200
    checks = {"count": 0}

    def passed() -> bool:
        checks["count"] += 1
        return True

    # When they are tokenized, only the first chunk is, and the clock is read once for it
    encoded = int8.tokenization.encode("query", passages, "truncate", passed)
    first_chunk = -(-TOKENIZE_FIRST_CHUNK_CHARS // 3900)
    assert encoded.tokenized == len(encoded.runs) == first_chunk
    assert checks["count"] == 1
    # and through score(), every passage comes back unscored rather than late
    report = int8.score("query", passages, should_stop=passed)
    assert report.scores == [None] * 200


def test_a_request_within_the_first_chunk_never_reads_the_clock_while_tokenizing(int8: CrossEncoder) -> None:
    request = CorpusGenerator(seed=14).request(60)
    passages = [text for text in request.passages if len(text) < 1000][:40]
    assert sum(len(text) for text in passages) < TOKENIZE_FIRST_CHUNK_CHARS

    def clock_read() -> bool:
        raise AssertionError("should_stop() read while tokenizing a one-chunk request")

    encoded = int8.tokenization.encode(request.query, passages, "truncate", clock_read)
    assert encoded.tokenized == len(passages)


def test_chunked_tokenizing_gives_the_tokens_of_one_batch(int8: CrossEncoder) -> None:
    request = CorpusGenerator(seed=15).request(100)
    passages = [passage * 8 for passage in request.passages]  # several chunks
    got = int8.tokenization.encode_pairs(request.query, passages, lambda: False)
    expected = int8.tokenization.tokenizer.encode_batch([(request.query, passage) for passage in passages])
    assert [encoding.ids for encoding in got] == [encoding.ids for encoding in expected]
