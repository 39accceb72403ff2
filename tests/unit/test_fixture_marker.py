"""A generated fixture model says so (config.json), /health and the local tools report it; the generator is quiet."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from reranker.engine import CrossEncoder
from reranker.model_files import FIXTURE_CONFIG_KEY, is_generated_fixture
from tests.events import load_event
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_model
from tools.fixture_model import families
from tools.fixture_model.__main__ import marker_model, quantize, without_preprocessing_advice
from tools.invoke import LocalContext, fixture_notice


@pytest.fixture
def unmarked_model(tmp_path: Path) -> Path:
    """The fixture's files with the generator's mark removed: what a FlashRank archive's config.json looks like."""
    target = tmp_path / MODEL_NAME
    shutil.copytree(fixture_model("int8"), target)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    del config[FIXTURE_CONFIG_KEY]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return target


def test_the_generator_and_the_engine_agree_on_the_mark() -> None:
    assert families.FIXTURE_CONFIG_KEY == FIXTURE_CONFIG_KEY


@pytest.mark.parametrize("kind", ["int8", "fp32", "marker"])
def test_every_generated_model_is_marked(kind: str) -> None:
    names = [MODEL_NAME] if kind == "marker" else FAMILY_NAMES
    for name in names:
        assert is_generated_fixture(fixture_model(kind, name)), name


def test_the_engine_reports_the_mark_and_never_guesses_it_from_the_name(unmarked_model: Path) -> None:
    generated = CrossEncoder.load(fixture_model("int8"))
    assert generated.fixture is True
    assert generated.describe()["fixture"] is True
    # Same folder name, same files, no mark: a real model as far as anyone can tell.
    assert unmarked_model.name == fixture_model("int8").name
    assert CrossEncoder.load(unmarked_model).fixture is False


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_only_a_json_true_marks_a_model(unmarked_model: Path, value: str) -> None:
    config_path = unmarked_model / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config[FIXTURE_CONFIG_KEY] = value
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert is_generated_fixture(unmarked_model) is False


def test_a_missing_or_broken_config_is_not_a_fixture(tmp_path: Path) -> None:
    assert is_generated_fixture(tmp_path) is False
    (tmp_path / "config.json").write_text("[1, 2]", encoding="utf-8")
    assert is_generated_fixture(tmp_path) is False


def test_health_says_whether_the_model_is_a_generated_fixture(
    configure: Callable[..., ModuleType], unmarked_model: Path
) -> None:
    def health_model(app: ModuleType) -> dict[str, object]:
        response = app.lambda_handler(load_event("http-api-health.json"), LocalContext())
        model: dict[str, object] = json.loads(response["body"])["model"]
        return model

    assert health_model(configure())["fixture"] is True
    assert health_model(configure(MODEL_DIR=str(unmarked_model)))["fixture"] is False
    configure(force=True)  # back to the fixture for the tests that follow in this worker


def test_the_local_tools_warn_about_a_fixture_and_say_how_to_get_the_real_model(unmarked_model: Path) -> None:
    notice = fixture_notice(fixture_model("int8"), "./dev demo events/direct-rerank.json")
    assert notice is not None
    assert "random weights" in notice
    assert "scores mean nothing" in notice
    assert "layer/README.md" in notice
    assert "MODEL_ARCHIVE" in notice
    assert "make -C layer build-ModelLayer" in notice
    assert "./dev demo events/direct-rerank.json --model-dir " in notice
    assert fixture_notice(unmarked_model, "./dev demo") is None
    assert fixture_notice(None, "./dev demo") is None


def test_quantizing_drops_onnxruntimes_preprocessing_advice_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    quantize(marker_model(1))
    assert not [record for record in caplog.records if "pre-processing" in record.getMessage()]
    with without_preprocessing_advice():
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.warning("a real problem")
    assert [record.getMessage() for record in caplog.records] == ["a real problem"]
    logging.warning("Please consider to run pre-processing before quantization.")  # the filter is gone
    assert len(caplog.records) == 2
