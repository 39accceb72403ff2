"""RerankerClient.from_url(..., unsigned=True) against `./dev serve`'s server: no credentials, no region, no SigV4."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError, NoRegionError
from test_readme_examples import client_readme_python_blocks

from lambda_reranker_client import RerankerClient, RouteNotFound
from tools.serve import make_server

README_URL = "http://127.0.0.1:8080"  # what the client README's local example calls (./dev serve's default)
PASSAGES = ["Bananas are yellow.", "A cross-encoder scores the query and the passage together."]


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing botocore could sign with: no keys, no region (config files already point nowhere)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def local_serve(app: ModuleType, *, function_url: bool = False) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """tools.serve's server (what `./dev serve` runs) on a free port; yields its URL and the events it sent."""
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        return app.lambda_handler(event, context)

    server = make_server(handler, function_url=function_url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", events
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("function_url", [False, True], ids=["http-api", "function-url"])
@pytest.mark.usefixtures("no_aws")
def test_an_unsigned_client_reranks_with_no_credentials_or_region(
    app: ModuleType, function_url: bool
) -> None:
    with local_serve(app, function_url=function_url) as (url, events):
        response = RerankerClient.from_url(url, unsigned=True).rerank("what is a cross-encoder?", PASSAGES)

    assert [result.index for result in response.results] == [1, 0]
    (event,) = events
    assert event["rawPath"] == "/rerank"
    assert not {"authorization", "x-amz-date", "x-amz-content-sha256"} & set(event["headers"])


@pytest.mark.usefixtures("no_aws")
def test_a_signed_client_needs_a_region_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NoRegionError):
        RerankerClient.from_url(README_URL)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(NoCredentialsError):
        RerankerClient.from_url(README_URL)


@pytest.mark.parametrize("option", [{"region": "us-east-1"}, {"service": "lambda"}])
def test_signing_options_are_refused_with_unsigned(option: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="unsigned"):
        RerankerClient.from_url(README_URL, unsigned=True, **option)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_aws")
def test_unsigned_errors_are_the_services_own(app: ModuleType) -> None:
    with local_serve(app) as (url, _), pytest.raises(RouteNotFound):
        RerankerClient.from_url(f"{url}/nowhere/rerank", unsigned=True).rerank("q", ["a"])


@pytest.mark.usefixtures("no_aws")
def test_the_readme_local_example_runs_against_dev_serve(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    example = client_readme_python_blocks()[1]
    assert README_URL in example
    with local_serve(app) as (url, events):
        # The README's own code, pointed at this server's port.
        exec(example.replace(README_URL, url), {"__name__": "__main__"})

    printed = capsys.readouterr().out.strip().splitlines()  # the handler's EMF metrics print here too
    assert printed[-1] == "[1, 0]"
    assert len(events) == 1
