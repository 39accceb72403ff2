"""Where the generated fixture models live, and a clear failure when they have not been generated."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / ".fixtures"
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
# One fixture per FlashRank model difference that matters to the engine (tools/fixture_model/families.py).
FAMILY_NAMES = (
    MODEL_NAME,  # BERT uncased WordPiece, 2 layers, 1 logit
    "ms-marco-MiniLM-L-12-v2",  # MiniLM-L-12 shape: 12 layers, hidden 384, 12 heads
    "rank-T5-flan",  # T5: SentencePiece Unigram, $A </s> $B </s>, no token_type_ids input
    "ms-marco-MultiBERT-L-12",  # multilingual WordPiece, 2 logits
    "miniReranker_arabic_v1",  # multilingual WordPiece, 3 logits
)


def fixture_model(kind: str = "int8", name: str = MODEL_NAME) -> Path:
    """The fixture model directory of one kind (int8, fp32 or marker) and family."""
    directory = FIXTURES / kind / name
    if not directory.is_dir():
        pytest.fail(f"fixture model {directory} is missing: run ./dev setup (it generates .fixtures/)")
    return directory


def fixture_cache_dir(kind: str = "int8", name: str = MODEL_NAME) -> Path:
    """The directory to hand FlashRank as cache_dir so it finds the fixture and never downloads."""
    return fixture_model(kind, name).parent


def fixture_archive() -> Path:
    archive = FIXTURES / f"{MODEL_NAME}.zip"
    if not archive.is_file():
        pytest.fail(f"fixture archive {archive} is missing: run ./dev setup")
    return archive
