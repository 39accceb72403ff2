"""Where the generated fixture models live, and a clear failure when they have not been generated."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / ".fixtures"
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"


def fixture_model(kind: str = "int8") -> Path:
    """The fixture model directory of one kind: int8, fp32 or marker."""
    directory = FIXTURES / kind / MODEL_NAME
    if not directory.is_dir():
        pytest.fail(f"fixture model {directory} is missing: run ./dev setup (it generates .fixtures/)")
    return directory


def fixture_cache_dir(kind: str = "int8") -> Path:
    """The directory to hand FlashRank as cache_dir so it finds the fixture and never downloads."""
    return fixture_model(kind).parent


def fixture_archive() -> Path:
    archive = FIXTURES / f"{MODEL_NAME}.zip"
    if not archive.is_file():
        pytest.fail(f"fixture archive {archive} is missing: run ./dev setup")
    return archive
