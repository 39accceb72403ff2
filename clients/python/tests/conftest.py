"""The project's real lambda_handler (fixture model) behind a SigV4-checking stand-in for AWS, and test credentials."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import standin

from tools.invoke import FIXTURE_MODEL_DIR

# Haystack sends usage events to a remote service unless told not to (read once, when haystack is imported);
# tests reach nothing but the stand-in on 127.0.0.1.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

ACCESS_KEY = "AKIDSTANDINTEST00001"
SECRET_KEY = "stand-in-secret/0123456789abcdefghijklmnopqrstu"
REGION = "us-east-1"
FUNCTION_NAME = "reranker"

# The environment the handler is imported and reset with (as the main suite's tests/conftest.py does).
HANDLER_ENV = {
    "POWERTOOLS_SERVICE_NAME": "reranker",
    "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
    "AWS_REGION": REGION,
    "SCORE_CACHE_MB": "0",
    "MODEL_DIR": str(FIXTURE_MODEL_DIR),
}


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's chain finds exactly the test key (env), never a profile, a config file or instance metadata."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_LAMBDA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def app() -> ModuleType:
    """reranker.app imported the way Lambda's init imports it, with the fixture model."""
    if not FIXTURE_MODEL_DIR.is_dir():
        pytest.fail(f"fixture model {FIXTURE_MODEL_DIR} is missing: run ./dev setup")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HANDLER_ENV.items():
            patch.setenv(name, value)
        patch.delenv("LAMBDA_TASK_ROOT", raising=False)
        from reranker import app as module

        module.reset(HANDLER_ENV)
    return module


@pytest.fixture(scope="session")
def server(app: ModuleType) -> Iterator[standin.StandIn]:
    running = standin.start(app.lambda_handler, secrets={ACCESS_KEY: SECRET_KEY}, function_name=FUNCTION_NAME)
    yield running
    running.close()


@pytest.fixture
def aws(server: standin.StandIn) -> Iterator[standin.StandIn]:
    """The stand-in with an empty request log and no throttling left over from another test."""
    server.received.clear()
    server.throttle_next = 0
    server.answer_delay = 0.0
    yield server
    server.settle()
    server.throttle_next = 0
    server.answer_delay = 0.0


@pytest.fixture
def handler_env(app: ModuleType) -> Iterator[Callable[..., None]]:
    """handler_env(MODEL_DIR=...) resets the handler with changed settings; the defaults come back afterwards."""

    def apply(**overrides: str) -> None:
        app.reset({**HANDLER_ENV, **overrides})

    yield apply
    app.reset(HANDLER_ENV)
