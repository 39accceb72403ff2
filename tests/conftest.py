"""Shared fixtures: the handler module loaded with the fixture model, and JSON log/EMF capture."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings

from tests.models import fixture_model

# CI (CI=true) explores the same examples every run, so a red build always means a change broke something;
# developers keep hypothesis' random exploration, which is how new counterexamples are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

# tests/artifact tests a built package: `./dev artifact` and the artifact step of `./dev test` build one and name it
# in RERANKER_ARTIFACT_DIR. Without one they are not collected, so a plain run does not report them as skipped.
# The arm64 package under emulation takes minutes: `./dev arm64` (a step of `./dev test`) runs tests/arm64, naming
# the package in RERANKER_ARM64_PACKAGE_DIR.
collect_ignore = [
    folder
    for folder, variable in (("artifact", "RERANKER_ARTIFACT_DIR"), ("arm64", "RERANKER_ARM64_PACKAGE_DIR"))
    if not os.environ.get(variable)
]

# The environment the handler is imported and reset with; tests override single values.
BASE_ENV = {
    "POWERTOOLS_SERVICE_NAME": "reranker",
    "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "AWS_LAMBDA_FUNCTION_NAME": "reranker-test",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
    "AWS_REGION": "us-east-1",
    # The warm score cache would make a test's outcome depend on which tests ran before it in the worker
    # (a deadline test finds every passage cached); cache tests turn it on with configure(SCORE_CACHE_MB=...).
    "SCORE_CACHE_MB": "0",
}


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The generated int8 fixture model; fails (never skips) with 'run ./dev setup' when missing."""
    return fixture_model("int8")


@pytest.fixture(scope="session")
def app_module(model_dir: Path) -> ModuleType:
    """reranker.app imported the way Lambda's init imports it, with the fixture model.

    The environment is patched only around the import (it picks the tracer and names), so tests of other
    modules in the same worker never see it; resets pass their environment explicitly.
    """
    env = {**BASE_ENV, "MODEL_DIR": str(model_dir)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("LAMBDA_TASK_ROOT", raising=False)
        patch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
        from reranker import app

        app.reset(env)
    _applied["env"] = env
    return app


_applied: dict[str, dict[str, str]] = {}


@pytest.fixture
def configure(app_module: ModuleType, model_dir: Path) -> Callable[..., ModuleType]:
    """configure(MAX_PASSAGES="3", force=True) -> the app reset with that environment (only when it changed).

    ``clock``: the monotonic clock the scoring policy measures deadlines with (the next configure() resets).
    """

    def apply(
        *, force: bool = False, clock: Callable[[], float] | None = None, **overrides: str
    ) -> ModuleType:
        env = {**BASE_ENV, "MODEL_DIR": str(model_dir), **overrides}
        if clock is not None:
            app_module.reset(env, clock=clock)
            _applied.pop("env", None)
        elif force or _applied.get("env") != env:
            app_module.reset(env)
            _applied["env"] = env
        return app_module

    return apply


@pytest.fixture
def app(configure: Callable[..., ModuleType]) -> ModuleType:
    """The handler module with the default test environment."""
    return configure()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON object line of captured output (Powertools logs and EMF records)."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@pytest.fixture
def output(
    app_module: ModuleType, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], tuple[str, list[dict[str, Any]]]]]:
    """output() -> (text written to stdout/stderr since the last call, its JSON lines).

    Powertools' Logger keeps the stream it was created with (stdout at import time), so it is pointed at
    the captured stdout for the test; EMF records are print()ed and captured anyway.
    """
    from reranker.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.stream
    handler.setStream(_CurrentStdout())

    def read() -> tuple[str, list[dict[str, Any]]]:
        captured = capsys.readouterr()
        text = captured.out + captured.err
        return text, json_lines(text)

    yield read
    handler.setStream(previous)


class _CurrentStdout:
    """Writes to whatever sys.stdout is now (pytest swaps it per test phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()
