"""Generate the fixture FlashRank models: nano architecture, real BERT uncased vocabulary, calibrated head.

Writes, under --out:
  int8/ms-marco-TinyBERT-L-2-v2/        dynamically quantized like the published file (about 4 MB of ONNX)
  fp32/ms-marco-TinyBERT-L-2-v2/        the same weights unquantized (batch-invariant: exact parity target)
  marker/ms-marco-TinyBERT-L-2-v2/      a model whose score is high iff the marker word occurs (windowing tests)
  ms-marco-TinyBERT-L-2-v2.zip          the int8 directory zipped the way FlashRank publishes it
Deterministic: the same generator and package versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer

from tools.fixture_model.bert_graph import IR_VERSION, OPSET, BertShape, build_model, random_weights
from tools.fixture_model.corpus import CorpusGenerator

MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
ONNX_FILE = "flashrank-TinyBERT-L-2-v2.onnx"
TOKENIZER_DIR = Path(__file__).parent / "tokenizer"
SEED = 20261123
TARGET_LOGIT_STD = 1.5
CALIBRATION_PAIRS = 400
# The word whose presence the marker model scores; a single whole-word token of the uncased vocabulary.
MARKER_WORD = "zeppelin"
ZIP_TIMESTAMP = (2024, 1, 1, 0, 0, 0)


def model_config(shape: BertShape) -> dict[str, object]:
    return {
        "_name_or_path": "lambda-reranker/fixture-ms-marco-TinyBERT-L-2-v2",
        "architectures": ["BertForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate,
        "layer_norm_eps": shape.layer_norm_eps,
        "max_position_embeddings": shape.max_positions,
        "model_type": "bert",
        "num_attention_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": shape.type_vocab,
        "vocab_size": shape.vocab_size,
    }


def write_tokenizer_files(directory: Path) -> None:
    """The real bert-base-uncased tokenizer; its own 128-token padding/truncation defaults are dropped.

    FlashRank and our engine both set truncation and padding explicitly, as FlashRank's published
    tokenizer.json files leave them unset.
    """
    tokenizer = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["truncation"] = None
    tokenizer["padding"] = None
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    tokenizer_config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config["name_or_path"] = "lambda-reranker/fixture-ms-marco-TinyBERT-L-2-v2"
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    shutil.copyfile(TOKENIZER_DIR / "special_tokens_map.json", directory / "special_tokens_map.json")


def write_model_dir(directory: Path, model: onnx.ModelProto, shape: BertShape) -> None:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(model_config(shape), indent=2), encoding="utf-8")
    write_tokenizer_files(directory)
    onnx.save_model(model, directory / ONNX_FILE)


def calibration_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=512)
    return tokenizer


def pooled_outputs(model: onnx.ModelProto, pairs: list[tuple[str, str]]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tokenizer = calibration_tokenizer()
    pooled = []
    for encoding in tokenizer.encode_batch(pairs):
        feed = {
            "input_ids": np.array([encoding.ids], np.int64),
            "attention_mask": np.array([encoding.attention_mask], np.int64),
            "token_type_ids": np.array([encoding.type_ids], np.int64),
        }
        pooled.append(session.run(["pooled"], feed)[0][0])
    return np.asarray(pooled, dtype=np.float64)


def calibration_pairs() -> tuple[list[tuple[str, str]], np.ndarray]:
    """Realistic pairs, and for each the number of query words its passage shares."""
    corpus = CorpusGenerator(seed=SEED)
    pairs, overlaps = [], []
    while len(pairs) < CALIBRATION_PAIRS:
        request = corpus.request(8)
        query_words = set(request.query.split())
        for passage in request.passages:
            pairs.append((request.query, passage))
            overlaps.append(len(query_words & set(passage.split())))
    return pairs[:CALIBRATION_PAIRS], np.asarray(overlaps[:CALIBRATION_PAIRS], dtype=np.float64)


def calibrate_head(shape: BertShape, weights: dict[str, np.ndarray]) -> dict[str, float]:
    """Point the classifier along the pooled outputs' main direction: logits of mean 0, std 1.5.

    The sign is chosen so that passages sharing more words with the query tend to score higher.
    """
    pairs, overlaps = calibration_pairs()
    pooled = pooled_outputs(build_model(shape, weights, expose_pooled=True), pairs)
    centered = pooled - pooled.mean(axis=0)
    direction = np.linalg.svd(centered, full_matrices=False)[2][0]
    projection = pooled @ direction
    if np.corrcoef(projection, overlaps)[0, 1] < 0:
        direction, projection = -direction, -projection
    scale = TARGET_LOGIT_STD / projection.std()
    weights["classifier.weight"] = (direction * scale).astype(np.float32).reshape(shape.hidden, 1)
    weights["classifier.bias"] = np.array([-projection.mean() * scale], np.float32)
    logits = (pooled @ direction) * scale - projection.mean() * scale
    return {
        "logit_mean": float(logits.mean()),
        "logit_std": float(logits.std()),
        "overlap_correlation": float(np.corrcoef(logits, overlaps)[0, 1]),
    }


def quantize(fp32_model: onnx.ModelProto) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as scratch:
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


def generate(out: Path) -> dict[str, object]:
    shape = BertShape()
    weights = random_weights(shape, SEED)
    calibration = calibrate_head(shape, weights)
    fp32 = build_model(shape, weights)
    write_model_dir(out / "fp32" / MODEL_NAME, fp32, shape)
    write_model_dir(out / "int8" / MODEL_NAME, quantize(fp32), shape)
    marker_id = calibration_tokenizer().token_to_id(MARKER_WORD)
    if marker_id is None:
        raise SystemExit(f"marker word {MARKER_WORD!r} is not a single vocabulary token")
    write_model_dir(out / "marker" / MODEL_NAME, marker_model(marker_id), shape)
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
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / f"{MODEL_NAME}.zip.sha256").write_text(f"{summary['zip_sha256']}\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(".fixtures"))
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    summary = generate(args.out)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
