"""The committed openapi.json is exactly what `python -m tools.openapi --write` generates from the contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reranker import contract
from tools import openapi


def test_the_committed_document_is_the_generated_one() -> None:
    committed = openapi.TARGET.read_text(encoding="utf-8")
    assert committed == openapi.render(openapi.generate()), "run: python -m tools.openapi --write"


def test_every_component_schema_comes_from_the_contract() -> None:
    base = json.loads(openapi.BASE.read_text(encoding="utf-8"))
    assert "schemas" not in base["components"]
    generated = openapi.generate()["components"]["schemas"]
    assert list(generated) == [component.name for component in contract.COMPONENTS]


def test_check_mode_reports_a_stale_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(openapi, "TARGET", stale)
    monkeypatch.setattr(openapi, "REPO", tmp_path)
    assert openapi.main(["--check"]) == 1
    assert openapi.main(["--write"]) == 0
    assert openapi.main(["--check"]) == 0
