"""`sam local invoke -e events/<file>` with every event file: the real SAM CLI, Docker and Runtime Interface
Emulator running the x86_64 build with the model layer, each answer the one tests/events.py documents and each
ranking the one the handler gives in-process."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest

from tests.events import EXPECTED, event_files, load_event, run
from tests.models import REPO
from tests.sam_local.sam_cli import assert_expected, invoke, outcome_of_invoke, ranking, record

# Each invoke is a SAM CLI process, an image build (SAM rebuilds it because the template defines the layer), a
# container and a model load: a few seconds, mostly waiting, so several run at once.
PARALLEL_INVOKES = int(os.environ.get("SAM_LOCAL_PARALLEL_INVOKES", "4"))


@pytest.fixture(scope="module")
def invoked() -> dict[str, subprocess.CompletedProcess[str]]:
    names = sorted(EXPECTED)
    with ThreadPoolExecutor(PARALLEL_INVOKES) as pool:
        return dict(zip(names, pool.map(invoke, names), strict=True))


def test_every_event_file_is_invoked() -> None:
    assert event_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sam_local_invoke_answers_as_documented(
    invoked: dict[str, subprocess.CompletedProcess[str]], app: ModuleType, name: str
) -> None:
    # Given the event file a user passes to `sam local invoke -e`, when SAM ran it in its container
    outcome = outcome_of_invoke(invoked[name])
    record(f"sam local invoke -e events/{name}", outcome)

    # Then the answer is the documented one, and a ranking is the in-process handler's
    assert_expected(name, outcome)
    if outcome.status == 200:
        assert ranking(outcome.body) == ranking(run(app, load_event(name)).body)


def test_the_model_comes_from_the_layer(invoked: dict[str, subprocess.CompletedProcess[str]]) -> None:
    model = outcome_of_invoke(invoked["http-api-health.json"]).body["model"]
    fixture_sha256 = (REPO / ".fixtures" / "ms-marco-TinyBERT-L-2-v2.zip.sha256").read_text().split()[0]
    assert (model["source"], model["archive_sha256"]) == ("layer", fixture_sha256)
