"""SnapStart's runtime hooks, called in Lambda's order: init -> before-snapshot hooks -> after-restore -> requests.

The Lambda order runs in a fresh interpreter with awslambdaric's own hook runner (the code Lambda's python
runtime runs: before-snapshot hooks popped in reverse order of registration, after-restore hooks in order); its
answers must equal, byte for byte, those of an environment that never saw a snapshot. The renewals are checked
in this process by calling the hooks directly.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from reranker import runtime, snapstart
from reranker.auth import BearerAuthenticator
from reranker.observability import metrics
from tests.conftest import BASE_ENV
from tests.events import load_event
from tests.unit.test_observability import emf
from tests.unit.test_recorded_answers import answer_of

REPO = Path(__file__).resolve().parents[2]
# A few callers and answer kinds: direct and HTTP reranks, Cohere v2, TEI, a batch, health, an error.
EVENTS = (
    "direct-rerank.json",
    "http-api-rerank.json",
    "cohere-v2-rerank.json",
    "http-api-tei-rerank.json",
    "batch-requests.json",
    "http-api-health.json",
    "http-api-bad-top-k.json",
    "direct-rerank.json",  # again: a score-cache hit after the restore, as without SnapStart
)
CACHE_MB = "8"  # the score cache on, so that anything scored before the snapshot would show

LAMBDA_ORDER = """
import contextlib, io, json, sys
from awslambdaric import lambda_runtime_hooks_runner as hooks
from reranker import app, runtime
from reranker.observability import metrics
from tests.events import load_event
from tests.unit.test_recorded_answers import answer_of

def seen():
    cache = runtime.STATE.runtime.scorer.cache
    return {"warm_up": runtime.STATE.warm_up_seconds, "cache": [len(cache), cache.hits, cache.misses],
            "metrics": sorted(metrics.metric_set)}

report = {"init": seen()}
printed = io.StringIO()
with contextlib.redirect_stdout(printed):  # EMF records are print()ed
    hooks.run_before_snapshot()
report["snapshot"] = {**seen(), "printed": printed.getvalue()}
hooks.run_after_restore()
report["restored"] = {**seen(), "load_metric_pending": runtime.STATE.load_metric_pending}
report["answers"] = [answer_of(app, load_event(name)) for name in sys.argv[2:]]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(report, out)
"""


@pytest.fixture
def reset_afterwards(configure: Callable[..., ModuleType]) -> Iterator[None]:
    """Leave the shared app as other tests expect it: reset with the default environment."""
    yield
    configure(force=True)


@pytest.mark.usefixtures("reset_afterwards")
def test_answers_after_a_restore_equal_answers_without_snapstart(
    configure: Callable[..., ModuleType], model_dir: Path, tmp_path: Path
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "LAMBDA_TASK_ROOT", "AWS_", "_X_AMZN", "PYTEST"))
    }
    env.update(BASE_ENV)
    env.update(
        {
            "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}",
            "MODEL_DIR": str(model_dir),
            "SCORE_CACHE_MB": CACHE_MB,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        }
    )
    report_file = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-c", LAMBDA_ORDER, str(report_file), *EVENTS],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(report_file.read_text(encoding="utf-8"))

    # Init loads the model and runs nothing; the before-snapshot hook runs the warm-up, which leaves nothing
    # in the score cache and emits no metric.
    assert report["init"] == {"warm_up": None, "cache": [0, 0, 0], "metrics": []}
    snapshot = report["snapshot"]
    assert snapshot["warm_up"] is not None and snapshot["warm_up"] > 0
    assert (snapshot["cache"], snapshot["metrics"]) == ([0, 0, 0], [])
    assert '"_aws"' not in snapshot["printed"]
    assert report["restored"]["load_metric_pending"] is False
    assert report["restored"]["cache"] == [0, 0, 0]

    app = configure(force=True, SCORE_CACHE_MB=CACHE_MB)  # a fresh environment that never saw a snapshot
    expected = [answer_of(app, load_event(name)) for name in EVENTS]
    assert report["answers"] == expected
    assert '"cached": 5' in expected[-1]  # the repeated request was answered from the cache, in both


@pytest.mark.usefixtures("reset_afterwards")
def test_the_warm_up_scores_nothing_for_a_caller(configure: Callable[..., ModuleType]) -> None:
    configure(force=True, SCORE_CACHE_MB=CACHE_MB)
    metrics.clear_metrics()
    ready = runtime.ready()
    assert runtime.STATE.warm_up_seconds is None  # init alone does not warm up
    snapstart.before_snapshot()
    assert runtime.STATE.warm_up_seconds is not None
    cache = ready.scorer.cache
    assert (len(cache), cache.hits, cache.misses) == (0, 0, 0)
    assert metrics.metric_set == {}


@pytest.mark.usefixtures("reset_afterwards")
def test_with_exact_batches_the_warm_up_measures_the_run_costs_the_snapshot_keeps(
    configure: Callable[..., ModuleType],
) -> None:
    configure(force=True, ENGINE_SCHEDULE="exact_batches")
    engine = runtime.ready().engine
    assert engine.schedule == "exact_batches" and engine.runner.measured_costs is None
    snapstart.before_snapshot()
    assert engine.runner.measured_costs is not None


def test_two_restores_of_one_snapshot_draw_different_random_numbers() -> None:
    snapshot = random.getstate(), np.random.get_state()

    def restore(renew: bool) -> tuple[float, float]:
        random.setstate(snapshot[0])
        np.random.set_state(snapshot[1])
        if renew:
            snapstart.after_restore()
        return random.random(), float(np.random.random())

    assert restore(renew=False) == restore(renew=False)  # what every copy would draw without the hook
    first, second = restore(renew=True), restore(renew=True)
    assert first[0] != second[0]
    assert first[1] != second[1]


@pytest.mark.usefixtures("reset_afterwards")
def test_the_bearer_authenticator_is_made_anew_after_restore(
    configure: Callable[..., ModuleType],
) -> None:
    import boto3
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    configure(force=True, AUTH_MODE="bearer", AUTH_TOKENS_PARAMETER="/reranker/tokens")
    before = runtime.ready().authenticator
    assert isinstance(before, BearerAuthenticator)
    # A provider made before the snapshot would hold a boto3 client (and its connection pool) in every copy.
    DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=boto3.client("ssm", region_name="us-east-1"))
    snapstart.after_restore()
    after = runtime.ready().authenticator
    assert isinstance(after, BearerAuthenticator)
    assert after is not before
    assert (after.parameter_name, after.max_age_seconds) == (before.parameter_name, before.max_age_seconds)
    assert "ssm" not in DEFAULT_PROVIDERS


@pytest.mark.usefixtures("reset_afterwards")
def test_the_load_metric_is_not_emitted_after_a_restore(
    configure: Callable[..., ModuleType], output: Callable[[], tuple[str, list[dict[str, Any]]]]
) -> None:
    from tools.invoke import LocalContext

    for restored in (False, True):
        app = configure(force=True)  # a fresh init: the load metric is owed to the first invocation
        if restored:
            snapstart.after_restore()
        output()
        app.lambda_handler(load_event("direct-rerank.json"), LocalContext())
        _, lines = output()
        assert ("ModelLoadTime" in emf(lines)) is not restored


@pytest.mark.usefixtures("reset_afterwards")
def test_a_score_cache_that_holds_anything_is_emptied_after_restore(
    configure: Callable[..., ModuleType],
) -> None:
    app = configure(force=True, SCORE_CACHE_MB=CACHE_MB)
    answer_of(app, load_event("direct-rerank.json"))
    cache = runtime.ready().scorer.cache
    assert len(cache) == 5
    snapstart.after_restore()
    assert (len(cache), cache.hits, cache.misses) == (0, 0, 0)


def test_the_hooks_are_registered_once(app_module: ModuleType) -> None:
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    snapstart.register_hooks()  # again, as a second import or reset might: still once
    assert [hook for hook, _, _ in get_before_snapshot()].count(snapstart.before_snapshot) == 1
    assert [hook for hook, _, _ in get_after_restore()].count(snapstart.after_restore) == 1


# --- the template: SnapStart where Lambda allows it, refused where Lambda refuses it --------------------------


def _evaluate(node: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The few intrinsic functions the SnapStart rule and condition use; parameter values are strings."""
    if isinstance(node, dict) and len(node) == 1:
        ((name, value),) = node.items()
        if name == "Ref":
            return parameters[value]
        if name == "Condition":
            return _evaluate(conditions[value], parameters, conditions)
        arguments = [_evaluate(item, parameters, conditions) for item in value]
        if name == "Fn::Equals":
            return str(arguments[0]) == str(arguments[1])
        if name == "Fn::Not":
            return not arguments[0]
        if name == "Fn::And":
            return all(arguments)
        raise AssertionError(f"unexpected intrinsic {name}")
    return node


@pytest.mark.parametrize("snapstart_on", ["true", "false"])
@pytest.mark.parametrize("provisioned", ["0", "1", "5"])
@pytest.mark.parametrize("ephemeral_mb", ["512", "1024", "10240"])
def test_the_template_refuses_what_lambda_refuses_with_snapstart(
    snapstart_on: str, provisioned: str, ephemeral_mb: str
) -> None:
    from cfnlint.decode import decode_str

    template, problems = decode_str((REPO / "template.yaml").read_text(encoding="utf-8"))
    assert not problems and template is not None
    parameters = {
        "SnapStart": snapstart_on,
        "ProvisionedConcurrency": provisioned,
        "EphemeralStorageMB": ephemeral_mb,
    }
    conditions = template["Conditions"]
    rule = template["Rules"]["SnapStartCompatibility"]
    applies = _evaluate(rule["RuleCondition"], parameters, conditions)
    accepted = not applies or all(
        _evaluate(assertion["Assert"], parameters, conditions) for assertion in rule["Assertions"]
    )
    lambda_allows = snapstart_on == "false" or (provisioned == "0" and ephemeral_mb == "512")
    assert accepted == lambda_allows
    snapstart_applied = _evaluate(conditions["SnapStartOn"], parameters, conditions)
    assert snapstart_applied == (snapstart_on == "true" and lambda_allows)

    function = template["Resources"]["RerankFunction"]["Properties"]
    runtime_version = tuple(int(part) for part in function["Runtime"].removeprefix("python").split("."))
    assert runtime_version >= (3, 12)  # SnapStart for Python starts at python3.12
    assert function["AutoPublishAlias"]  # SnapStart applies to published versions only
    assert function["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
    # Lambda refuses SnapStart with EFS and with container images: the function has neither.
    assert "FileSystemConfigs" not in function and function.get("PackageType", "Zip") == "Zip"
