"""A FlashRank model folder: which ONNX file FlashRank opens, its tokenizer as FlashRank configures it, and a
graph whose outputs can be scored (refused at load, never per request)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import AddedToken, Tokenizer

from reranker.errors import ModelFileInvalid

# FlashRank 0.2.10's model_file_map: the ONNX file FlashRank opens for each published pairwise model.
FLASHRANK_ONNX_FILES = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "rank-T5-flan": "flashrank-rankt5_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
    "miniReranker_arabic_v1": "miniReranker_arabic_v1.onnx",
}
# Operators that dynamic int8 quantization inserts; their activation scale spans the whole batch tensor.
DYNAMIC_QUANTIZATION_OPS = (b"DynamicQuantizeLinear", b"MatMulInteger", b"DynamicQuantizeMatMul")
# Output element types whose values logits_to_scores can read.
SCORABLE_OUTPUT_TYPES = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})
# tools/fixture_model marks each model it generates in its config.json: random weights, scores that mean nothing.
FIXTURE_CONFIG_KEY = "lambda_reranker_fixture"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFileInvalid(f"model file {path.name} is missing from {path.parent.name}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileInvalid(f"model file {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ModelFileInvalid(f"model file {path.name} must hold a JSON object")
    return loaded


def is_generated_fixture(model_dir: Path) -> bool:
    """True for a model tools/fixture_model generated (its config.json says so), never guessed from the name."""
    try:
        return _read_json(model_dir / "config.json").get(FIXTURE_CONFIG_KEY) is True
    except ModelFileInvalid:
        return False


def find_onnx_file(model_dir: Path) -> Path:
    """The file FlashRank opens: its name for the folder's model, else any FlashRank name present, else the
    folder's only .onnx file (FlashRank's folders may hold an fp32 file beside the _Q file it opens)."""
    known = FLASHRANK_ONNX_FILES.get(model_dir.name)
    if known is not None and (model_dir / known).is_file():
        return model_dir / known
    candidates = sorted(model_dir.glob("*.onnx"))
    if len(candidates) == 1:
        return candidates[0]
    named = [path for path in candidates if path.name in FLASHRANK_ONNX_FILES.values()]
    if known is None and len(named) == 1:
        return named[0]
    expected = known or "<one>.onnx"
    found = ", ".join(path.name for path in candidates) or "none"
    raise ModelFileInvalid(
        f"model file {expected} is missing from {model_dir.name} (onnx files found: {found})"
    )


def load_tokenizer(model_dir: Path, max_length: int) -> tuple[Tokenizer, int]:
    """The tokenizer configured as FlashRank configures it; returns it with the pad id from config.json."""
    config = _read_json(model_dir / "config.json")
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
    special_tokens = _read_json(model_dir / "special_tokens_map.json")
    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception as exc:  # the tokenizers library raises bare Exception on bad files
        if not (model_dir / "tokenizer.json").is_file():
            raise ModelFileInvalid(f"model file tokenizer.json is missing from {model_dir.name}") from exc
        raise ModelFileInvalid(f"model file tokenizer.json could not be loaded: {exc}") from exc
    model_max_length = tokenizer_config.get("model_max_length", max_length)
    pad_id = config.get("pad_token_id", 0)
    if not isinstance(model_max_length, int | float) or not isinstance(pad_id, int):
        raise ModelFileInvalid(
            "model files tokenizer_config.json / config.json have non-numeric lengths or ids"
        )
    tokenizer.enable_truncation(max_length=int(min(model_max_length, max_length)))
    tokenizer.no_padding()
    for token in special_tokens.values():
        if isinstance(token, str):
            tokenizer.add_special_tokens([token])
        elif isinstance(token, dict):
            tokenizer.add_special_tokens([AddedToken(**token)])
    return tokenizer, pad_id


def check_outputs(session: ort.InferenceSession, onnx_file: str) -> None:
    """Refuse at load a graph whose first output is not (batch, columns >= 1) floats: never fail per request."""
    outputs = session.get_outputs()
    if not outputs:
        raise ModelFileInvalid(f"model file {onnx_file} has no outputs")
    logits = outputs[0]
    shape = logits.shape
    if logits.type not in SCORABLE_OUTPUT_TYPES:
        raise ModelFileInvalid(
            f"model file {onnx_file}: output {logits.name} is {logits.type}, not float logits"
        )
    if shape is not None and len(shape) != 2:
        raise ModelFileInvalid(
            f"model file {onnx_file}: output {logits.name} has shape {shape}; expected (batch, columns)"
        )
    columns = shape[1] if shape is not None else None
    if not isinstance(columns, int):  # symbolic or unknown: ask the graph itself
        feed = {
            node.name: np.zeros((1, 2), dtype=np.int64)
            for node in session.get_inputs()
            if node.name in ("input_ids", "attention_mask", "token_type_ids")
        }
        if "attention_mask" in feed:
            feed["attention_mask"][:] = 1
        try:
            probe = np.asarray(session.run([logits.name], feed)[0])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFileInvalid(f"model file {onnx_file} fails on a two-token probe input: {exc}") from exc
        if probe.ndim != 2:
            raise ModelFileInvalid(
                f"model file {onnx_file}: output {logits.name} has shape {probe.shape}; expected (batch, columns)"
            )
        columns = probe.shape[1]
    if columns < 1:
        raise ModelFileInvalid(f"model file {onnx_file}: output {logits.name} has no columns to score")
