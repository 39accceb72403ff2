"""Generate the fixture FlashRank models: one per family difference that matters to the engine, calibrated heads.

    python -m tools.fixture_model --out .fixtures                 # what CI and the tests use (about 20 s)
    python -m tools.fixture_model --shapes full --out DIR         # full-size same-shape models (minutes, GBs)

Writes, under --out (test shapes, the default):
  int8/ms-marco-TinyBERT-L-2-v2/        nano: real BERT uncased vocabulary, 2 layers, 1 logit, quantized like the
                                        published file (about 4 MB of ONNX)
  fp32/ms-marco-TinyBERT-L-2-v2/        the same weights unquantized (batch-invariant: exact parity target)
  marker/ms-marco-TinyBERT-L-2-v2/      a model whose score is high iff the marker word occurs (windowing tests)
  ms-marco-TinyBERT-L-2-v2.zip          the int8 directory zipped the way FlashRank publishes it
  {int8,fp32}/ms-marco-MiniLM-L-12-v2/  MiniLM-L-12 shape (12 layers, hidden 384, 12 heads, 1536), 1 logit
  {int8,fp32}/rank-T5-flan/             T5 encoder (small), SentencePiece Unigram + Metaspace, `$A </s> $B </s>`,
                                        inputs input_ids + attention_mask only; int8/ also holds the unquantized
                                        flashrank-rankt5.onnx beside the flashrank-rankt5_Q.onnx FlashRank opens
  {int8,fp32}/ms-marco-MultiBERT-L-12/  multilingual WordPiece (lowercase, accents stripped, Han split), 2 logits
  {int8,fp32}/miniReranker_arabic_v1/   the multilingual tokenizer with a 3-logit head
  summary.json                          sizes, hashes and calibration of each
--shapes full writes int8/<name>/ and <name>.zip for the five FlashRank models at their real dimensions
(TinyBERT-L-2; MiniLM-L-12 as ms-marco-MiniLM-L-12-v2 and ce-esci-MiniLM-L12-v2; rank-T5-flan as T5-base's
encoder, d_model 768, 12 layers, d_ff 2048, vocabulary 32128; MultiBERT-L-12 as BERT-base multilingual,
vocabulary 105879) for memory, latency and cold-start benchmarks; the tokenizers stay the small fixture ones.
Deterministic: the same generator and package versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer

from tools.fixture_model import t5_graph
from tools.fixture_model.bert_graph import IR_VERSION, OPSET, BertShape, build_model, random_weights
from tools.fixture_model.corpus import CorpusGenerator, MultilingualCorpusGenerator
from tools.fixture_model.families import (
    FULL_FAMILIES,
    TEST_FAMILIES,
    Family,
    load_tokenizer,
    model_config,
    write_tokenizer_files,
)
from tools.fixture_model.t5_graph import T5Shape

MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
ONNX_FILE = "flashrank-TinyBERT-L-2-v2.onnx"
SEED = 20261123
TARGET_LOGIT_STD = 1.5
CALIBRATION_PAIRS = 400
# The word whose presence the marker model scores; a single whole-word token of the uncased vocabulary.
MARKER_WORD = "zeppelin"
ZIP_TIMESTAMP = (2024, 1, 1, 0, 0, 0)


NANO = Family(MODEL_NAME, ONNX_FILE, "bert-uncased", BertShape(), SEED)


def write_model_dir(
    directory: Path, model: onnx.ModelProto, family: Family, *, onnx_file: str | None = None
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model_config(family), indent=2), encoding="utf-8")
    write_tokenizer_files(directory, family)
    onnx.save_model(model, directory / (onnx_file or family.onnx_file))


def calibration_tokenizer(family: Family = NANO) -> Tokenizer:
    tokenizer = load_tokenizer(family.tokenizer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=512)
    return tokenizer


def pooled_outputs(model: onnx.ModelProto, pairs: list[tuple[str, str]], family: Family = NANO) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    declared = {node.name for node in session.get_inputs()}
    tokenizer = calibration_tokenizer(family)
    pooled = []
    for encoding in tokenizer.encode_batch(pairs):
        feed = {
            "input_ids": np.array([encoding.ids], np.int64),
            "attention_mask": np.array([encoding.attention_mask], np.int64),
            "token_type_ids": np.array([encoding.type_ids], np.int64),
        }
        pooled.append(session.run(["pooled"], {k: v for k, v in feed.items() if k in declared})[0][0])
    return np.asarray(pooled, dtype=np.float64)


def calibration_pairs(family: Family = NANO) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Realistic pairs, and for each the number of query words its passage shares."""
    corpus = MultilingualCorpusGenerator(seed=SEED) if family.multilingual else CorpusGenerator(seed=SEED)
    pairs, overlaps = [], []
    while len(pairs) < family.calibration_pairs:
        request = corpus.request(8)
        query_words = set(request.query.split())
        for passage in request.passages:
            pairs.append((request.query, passage))
            overlaps.append(len(query_words & set(passage.split())))
    count = family.calibration_pairs
    return pairs[:count], np.asarray(overlaps[:count], dtype=np.float64)


def build_graph(
    family: Family, weights: dict[str, np.ndarray], *, expose_pooled: bool = False
) -> onnx.ModelProto:
    if isinstance(family.shape, T5Shape):
        return t5_graph.build_model(family.shape, weights, expose_pooled=expose_pooled)
    return build_model(family.shape, weights, expose_pooled=expose_pooled)


def family_weights(family: Family) -> dict[str, np.ndarray]:
    if isinstance(family.shape, T5Shape):
        return t5_graph.random_weights(family.shape, family.seed)
    return random_weights(family.shape, family.seed)


def calibrate_head(family: Family, weights: dict[str, np.ndarray]) -> dict[str, float]:
    """Point the classifier along the pooled outputs' main direction: logits of mean 0, std 1.5.

    The sign is chosen so that passages sharing more words with the query tend to score higher. With two
    or more columns, column 1 minus column 0 is that logit (what softmax column 1 reads); a third column
    follows the second direction, so it changes the scores too.
    """
    pairs, overlaps = calibration_pairs(family)
    pooled = pooled_outputs(build_graph(family, weights, expose_pooled=True), pairs, family)
    centered = pooled - pooled.mean(axis=0)
    directions = np.linalg.svd(centered, full_matrices=False)[2]
    direction = directions[0]
    projection = pooled @ direction
    if np.corrcoef(projection, overlaps)[0, 1] < 0:
        direction, projection = -direction, -projection
    scale = TARGET_LOGIT_STD / projection.std()
    hidden, labels = family.shape.hidden, family.shape.labels
    if labels == 1:
        weights["classifier.weight"] = (direction * scale).astype(np.float32).reshape(hidden, 1)
        weights["classifier.bias"] = np.array([-projection.mean() * scale], np.float32)
        logits = (pooled @ direction) * scale - projection.mean() * scale
    else:
        weight = np.zeros((hidden, labels))
        bias = np.zeros(labels)
        weight[:, 0], weight[:, 1] = -direction * scale / 2, direction * scale / 2
        bias[0], bias[1] = projection.mean() * scale / 2, -projection.mean() * scale / 2
        second = directions[1]
        for column in range(2, labels):
            second_scale = TARGET_LOGIT_STD / (pooled @ second).std() / 2
            weight[:, column] = second * second_scale
            bias[column] = -(pooled @ second).mean() * second_scale
        weights["classifier.weight"] = weight.astype(np.float32)
        weights["classifier.bias"] = bias.astype(np.float32)
        logits = pooled @ weight[:, 1] + bias[1] - (pooled @ weight[:, 0] + bias[0])
    return {
        "logit_mean": float(logits.mean()),
        "logit_std": float(logits.std()),
        "overlap_correlation": float(np.corrcoef(logits, overlaps)[0, 1]),
    }


def _not_preprocessing_advice(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def without_preprocessing_advice() -> Iterator[None]:
    """Drop onnxruntime's advice to run shape-inference pre-processing, which quantize_dynamic logs on the root
    logger at every call: the fixtures skip it on purpose (it would rewrite the graphs they pin). Every other
    record (real warnings and errors) still reaches the terminal."""
    root = logging.getLogger()
    root.addFilter(_not_preprocessing_advice)
    try:
        yield
    finally:
        root.removeFilter(_not_preprocessing_advice)


def quantize(fp32_model: onnx.ModelProto) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as scratch, without_preprocessing_advice():
        source, target = Path(scratch, "fp32.onnx"), Path(scratch, "int8.onnx")
        onnx.save_model(fp32_model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return onnx.load_model(target)


def marker_model(marker_id: int) -> onnx.ModelProto:
    """logit = 6 if the marker token id occurs among the attended tokens, else -6.

    A real cross-encoder's response to one sentence deep in a long passage is not something a random
    fixture can be trusted to show; this graph makes "the relevant sentence was seen" directly observable,
    with the same inputs, outputs and tokenizer as the nano model.
    """
    nodes = [
        # token_type_ids is declared (as in the nano graph) and consumed with weight zero.
        helper.make_node("ReduceSum", ["token_type_ids", "axes"], ["type_sum"], keepdims=1),
        helper.make_node("Cast", ["type_sum"], ["type_sum_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["type_sum_float", "zero"], ["type_zero"]),
        helper.make_node("Equal", ["input_ids", "marker_id"], ["is_marker"]),
        helper.make_node("Cast", ["is_marker"], ["is_marker_int"], to=TensorProto.INT64),
        helper.make_node("Mul", ["is_marker_int", "attention_mask"], ["attended_marker"]),
        helper.make_node("ReduceMax", ["attended_marker"], ["found"], axes=[1], keepdims=1),
        helper.make_node("Cast", ["found"], ["found_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["found_float", "spread"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["with_offset"]),
        helper.make_node("Add", ["with_offset", "type_zero"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(marker_id, np.int64), "marker_id"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(12.0, np.float32), "spread"),
        numpy_helper.from_array(np.array(-6.0, np.float32), "offset"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch_size", "sequence_length"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 1])]
    graph = helper.make_graph(nodes, "marker_cross_encoder", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def write_zip(directory: Path, archive: Path) -> None:
    """Deterministic zip holding one folder <name>/, as FlashRank publishes its models."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(directory.iterdir()):
            info = zipfile.ZipInfo(f"{directory.name}/{path.name}", date_time=ZIP_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zipped.writestr(info, path.read_bytes())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_nano(out: Path) -> dict[str, object]:
    """The nano fixture, its marker twin and the FlashRank-style archive of it."""
    weights = random_weights(NANO.shape, SEED)  # type: ignore[arg-type]
    calibration = calibrate_head(NANO, weights)
    fp32 = build_graph(NANO, weights)
    write_model_dir(out / "fp32" / MODEL_NAME, fp32, NANO)
    write_model_dir(out / "int8" / MODEL_NAME, quantize(fp32), NANO)
    marker_id = calibration_tokenizer().token_to_id(MARKER_WORD)
    if marker_id is None:
        raise SystemExit(f"marker word {MARKER_WORD!r} is not a single vocabulary token")
    write_model_dir(out / "marker" / MODEL_NAME, marker_model(marker_id), NANO)
    archive = out / f"{MODEL_NAME}.zip"
    write_zip(out / "int8" / MODEL_NAME, archive)
    summary = {
        "calibration": calibration,
        "fp32_onnx_bytes": (out / "fp32" / MODEL_NAME / ONNX_FILE).stat().st_size,
        "int8_onnx_bytes": (out / "int8" / MODEL_NAME / ONNX_FILE).stat().st_size,
        "int8_onnx_sha256": sha256_of(out / "int8" / MODEL_NAME / ONNX_FILE),
        "zip_bytes": archive.stat().st_size,
        "zip_sha256": sha256_of(archive),
        "marker_word": MARKER_WORD,
    }
    (out / f"{MODEL_NAME}.zip.sha256").write_text(f"{summary['zip_sha256']}\n", encoding="utf-8")
    return summary


def generate_family(out: Path, family: Family, *, with_fp32: bool, archive: bool) -> dict[str, object]:
    """int8 (and fp32) directories of one family; its int8 folder zipped as FlashRank publishes it."""
    weights = family_weights(family)
    calibration = calibrate_head(family, weights)
    fp32 = build_graph(family, weights)
    int8_dir = out / "int8" / family.name
    write_model_dir(int8_dir, quantize(fp32), family)
    if family.unquantized_file is not None:
        onnx.save_model(fp32, int8_dir / family.unquantized_file)
    summary: dict[str, object] = {
        "calibration": calibration,
        "int8_onnx_bytes": (int8_dir / family.onnx_file).stat().st_size,
        "int8_onnx_sha256": sha256_of(int8_dir / family.onnx_file),
    }
    if with_fp32:
        # FlashRank opens family.onnx_file whatever the folder holds: the unquantized twin gets that name.
        write_model_dir(out / "fp32" / family.name, fp32, family)
        summary["fp32_onnx_bytes"] = (out / "fp32" / family.name / family.onnx_file).stat().st_size
    if archive:
        zipped = out / f"{family.name}.zip"
        write_zip(int8_dir, zipped)
        summary["zip_bytes"] = zipped.stat().st_size
        summary["zip_sha256"] = sha256_of(zipped)
    return summary


def generate(out: Path, shapes: str = "test") -> dict[str, object]:
    if shapes == "full":
        families = {
            family.name: generate_family(out, family, with_fp32=False, archive=True)
            for family in FULL_FAMILIES()
        }
        summary: dict[str, object] = {"shapes": "full", "families": families}
    else:
        summary = generate_nano(out)
        summary["families"] = {
            family.name: generate_family(out, family, with_fp32=True, archive=False)
            for family in TEST_FAMILIES()
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(".fixtures"))
    parser.add_argument(
        "--shapes",
        choices=("test", "full"),
        default="test",
        help="test: the small fixtures CI uses; full: the five FlashRank models at their real dimensions",
    )
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    summary = generate(args.out, args.shapes)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
