"""The fixture families: one per FlashRank model difference that matters to the engine, and their model files.

Differences that matter: the tokenizer pipeline and pair template (BERT uncased WordPiece, multilingual
WordPiece, T5 SentencePiece Unigram), the graph's inputs (T5 declares no token_type_ids), the head's logit
count (1, 2, 3), the file FlashRank opens, and the size (MiniLM-L-12: 12 layers, hidden 384).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer

from tools.fixture_model.bert_graph import BertShape
from tools.fixture_model.t5_graph import T5Shape

HERE = Path(__file__).parent
TOKENIZER_DIRS = {
    "bert-uncased": HERE / "tokenizer",
    "bert-multilingual": HERE / "tokenizer_multilingual",
    "t5": HERE / "tokenizer_t5",
}
TokenizerKind = Literal["bert-uncased", "bert-multilingual", "t5"]
# Written into every generated config.json: the weights are random, so the model's scores mean nothing.
# reranker.engine reads the same key (CrossEncoder.fixture, /health's model.fixture).
FIXTURE_CONFIG_KEY = "lambda_reranker_fixture"
T5_EXTRA_IDS = 100
BERT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


@dataclass(frozen=True)
class Family:
    name: str  # FlashRank's model name: the folder, and the key of its model_file_map
    onnx_file: str  # the file FlashRank opens
    tokenizer: TokenizerKind
    shape: BertShape | T5Shape
    seed: int
    calibration_pairs: int = 400
    # An unquantized file FlashRank's folder may hold beside the one it opens (the engine must ignore it).
    unquantized_file: str | None = None

    @property
    def multilingual(self) -> bool:
        return self.tokenizer == "bert-multilingual"


def load_tokenizer(kind: TokenizerKind) -> Tokenizer:
    return Tokenizer.from_file(str(TOKENIZER_DIRS[kind] / "tokenizer.json"))


def tokenizer_vocab(kind: TokenizerKind) -> int:
    return load_tokenizer(kind).get_vocab_size()


def small_bert(kind: TokenizerKind, labels: int) -> BertShape:
    return BertShape(vocab_size=tokenizer_vocab(kind), labels=labels)


MINILM_L12 = BertShape(hidden=384, layers=12, heads=12, intermediate=1536)
NANO = "ms-marco-TinyBERT-L-2-v2"


def test_families() -> list[Family]:
    """What CI generates: small where size does not matter to the engine, one MiniLM-L-12-shaped model."""
    return [
        Family(
            "ms-marco-MiniLM-L-12-v2",
            "flashrank-MiniLM-L-12-v2_Q.onnx",
            "bert-uncased",
            MINILM_L12,
            12,
            calibration_pairs=64,
        ),
        Family(
            "rank-T5-flan",
            "flashrank-rankt5_Q.onnx",
            "t5",
            T5Shape(vocab_size=tokenizer_vocab("t5"), d_model=64, layers=2, heads=4, d_kv=16, d_ff=128),
            5,
            unquantized_file="flashrank-rankt5.onnx",
        ),
        Family(
            "ms-marco-MultiBERT-L-12",
            "flashrank-MultiBERT-L12_Q.onnx",
            "bert-multilingual",
            small_bert("bert-multilingual", 2),
            8,
        ),
        Family(
            "miniReranker_arabic_v1",
            "miniReranker_arabic_v1.onnx",
            "bert-multilingual",
            small_bert("bert-multilingual", 3),
            3,
        ),
    ]


def full_families() -> list[Family]:
    """The five FlashRank pairwise models at their real dimensions (benchmarks only)."""
    return [
        Family(NANO, "flashrank-TinyBERT-L-2-v2.onnx", "bert-uncased", BertShape(), 1, calibration_pairs=64),
        Family(
            "ms-marco-MiniLM-L-12-v2",
            "flashrank-MiniLM-L-12-v2_Q.onnx",
            "bert-uncased",
            MINILM_L12,
            12,
            calibration_pairs=32,
        ),
        Family(
            "ce-esci-MiniLM-L12-v2",
            "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
            "bert-uncased",
            MINILM_L12,
            13,
            calibration_pairs=32,
        ),
        Family("rank-T5-flan", "flashrank-rankt5_Q.onnx", "t5", T5Shape(), 5, calibration_pairs=32),
        Family(
            "ms-marco-MultiBERT-L-12",
            "flashrank-MultiBERT-L12_Q.onnx",
            "bert-multilingual",
            BertShape(vocab_size=105879, hidden=768, layers=12, heads=12, intermediate=3072, labels=2),
            8,
            calibration_pairs=32,
        ),
    ]


TEST_FAMILIES = test_families
FULL_FAMILIES = full_families


def bert_config(name: str, shape: BertShape) -> dict[str, object]:
    labels = {str(index): f"LABEL_{index}" for index in range(shape.labels)}
    return {
        "_name_or_path": f"lambda-reranker/fixture-{name}",
        "architectures": ["BertForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden,
        "id2label": labels,
        "label2id": {label: int(index) for index, label in labels.items()},
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


def t5_config(name: str, shape: T5Shape) -> dict[str, object]:
    return {
        "_name_or_path": f"lambda-reranker/fixture-{name}",
        "architectures": ["T5EncoderModel"],
        "d_ff": shape.d_ff,
        "d_kv": shape.d_kv,
        "d_model": shape.d_model,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True,
        "is_gated_act": True,
        "layer_norm_epsilon": shape.layer_norm_eps,
        "model_type": "t5",
        "num_heads": shape.heads,
        "num_layers": shape.layers,
        "num_labels": shape.labels,
        "pad_token_id": 0,
        "relative_attention_max_distance": shape.max_distance,
        "relative_attention_num_buckets": shape.buckets,
        "tie_word_embeddings": False,
        "vocab_size": shape.vocab_size,
    }


def model_config(family: Family) -> dict[str, object]:
    if isinstance(family.shape, T5Shape):
        config = t5_config(family.name, family.shape)
    else:
        config = bert_config(family.name, family.shape)
    return {**config, FIXTURE_CONFIG_KEY: True}


def write_tokenizer_files(directory: Path, family: Family) -> None:
    """tokenizer.json without padding/truncation (FlashRank sets both), and the two JSON files beside it."""
    source = TOKENIZER_DIRS[family.tokenizer]
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["truncation"] = None
    tokenizer["padding"] = None
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    if family.tokenizer == "bert-uncased":
        config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["name_or_path"] = f"lambda-reranker/fixture-{family.name}"
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        shutil.copyfile(source / "special_tokens_map.json", directory / "special_tokens_map.json")
        return
    if family.tokenizer == "bert-multilingual":
        config = {
            "do_lower_case": True,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
            "do_basic_tokenize": True,
            "never_split": None,
            "name_or_path": f"lambda-reranker/fixture-{family.name}",
            "tokenizer_class": "BertTokenizer",
            "model_max_length": 512,
            **BERT_SPECIAL_TOKENS,
        }
        special: dict[str, object] = dict(BERT_SPECIAL_TOKENS)
    else:
        extra = [f"<extra_id_{index}>" for index in range(T5_EXTRA_IDS)]
        config = {
            "additional_special_tokens": extra,
            "eos_token": "</s>",
            "extra_ids": T5_EXTRA_IDS,
            "model_max_length": 512,
            "name_or_path": f"lambda-reranker/fixture-{family.name}",
            "pad_token": "<pad>",
            "tokenizer_class": "T5Tokenizer",
            "unk_token": "<unk>",
        }
        # As the Hub writes them: AddedToken dicts, and a list FlashRank (and we) leave alone.
        special = {
            "additional_special_tokens": extra,
            "eos_token": _added_token("</s>"),
            "pad_token": _added_token("<pad>"),
            "unk_token": _added_token("<unk>"),
        }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def _added_token(content: str) -> dict[str, object]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
