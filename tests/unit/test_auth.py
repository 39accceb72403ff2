"""Bearer-token auth: header parsing, constant-time matching, rotation, and the SSM SecureString it reads."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reranker.auth import (
    AuthUnavailable,
    BearerAuthenticator,
    parse_tokens,
    powertools_fetcher,
    presented_token,
)
from reranker.errors import Unauthorized

PARAMETER = "/reranker/test/bearer-tokens"
HANDLER_DIR = Path(__file__).resolve().parents[2] / "handler"


class FakeFetch:
    def __init__(self, value: str) -> None:
        self.value = value
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, max_age: int) -> str:
        self.calls.append((name, max_age))
        return self.value


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
    ],
)
def test_presented_token(header: str, expected: str | None) -> None:
    assert presented_token({"authorization": header}) == expected


def test_tokens_may_be_listed_one_per_line_or_comma_separated() -> None:
    assert len(parse_tokens("one\ntwo, three ,\n\n")) == 3
    assert parse_tokens("  \n") == ()


def test_any_listed_token_is_accepted_so_keys_can_be_rotated() -> None:
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=60, fetch=FakeFetch("old-key\nnew-key"))
    authenticator.authenticate(bearer("old-key"))
    authenticator.authenticate(bearer("new-key"))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"authorization": "Basic b2xkLWtleQ=="}, "missing bearer token"),
        (bearer("wrong"), "invalid bearer token"),
        (bearer("old-ke"), "invalid bearer token"),
        (bearer("old-key-and-more"), "invalid bearer token"),
        (bearer("\u00e9t\u00e9"), "invalid bearer token"),  # non-ASCII must not raise TypeError
    ],
)
def test_wrong_or_missing_token_is_unauthorized(headers: dict[str, str], message: str) -> None:
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=60, fetch=FakeFetch("old-key"))
    with pytest.raises(Unauthorized, match=message) as raised:
        authenticator.authenticate(headers)
    assert raised.value.http_status == 401


def test_an_empty_parameter_accepts_nobody() -> None:
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=60, fetch=FakeFetch(" \n"))
    with pytest.raises(Unauthorized):
        authenticator.authenticate(bearer(""))


def test_an_unreadable_parameter_is_a_server_error_not_a_401() -> None:
    def failing(name: str, max_age: int) -> str:
        raise RuntimeError("AccessDeniedException: arn:aws:iam::123456789012:role/secret-role")

    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=60, fetch=failing)
    with pytest.raises(AuthUnavailable) as raised:
        authenticator.authenticate(bearer("x"))
    assert raised.value.http_status >= 500
    assert "arn:" not in raised.value.public_message


def test_parameter_is_requested_with_the_configured_max_age() -> None:
    fetch = FakeFetch("k")
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=123, fetch=fetch)
    authenticator.authenticate(bearer("k"))
    assert fetch.calls == [(PARAMETER, 123)]


# --- against moto's SSM (in-process mock: a real put_parameter SecureString and a real decrypting get) ------


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SSM", raising=False)
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        client.put_parameter(Name=PARAMETER, Value="key-one\nkey-two", Type="SecureString")
        yield client
    parameters.clear_caches()


def test_powertools_get_parameter_reads_and_decrypts_the_secure_string(ssm: Any) -> None:
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=300)  # the default fetcher: get_parameter
    authenticator.authenticate(bearer("key-two"))
    with pytest.raises(Unauthorized):
        authenticator.authenticate(bearer("key-three"))


def test_the_parameter_is_cached_for_max_age_not_read_per_request(ssm: Any) -> None:
    authenticator = BearerAuthenticator(PARAMETER, max_age_seconds=300, fetch=powertools_fetcher(ssm))
    authenticator.authenticate(bearer("key-one"))
    ssm.put_parameter(Name=PARAMETER, Value="rotated", Type="SecureString", Overwrite=True)
    authenticator.authenticate(bearer("key-one"))  # still the cached value
    fresh = BearerAuthenticator(PARAMETER, max_age_seconds=0, fetch=powertools_fetcher(ssm))
    fresh.authenticate(bearer("rotated"))


def test_a_missing_parameter_is_auth_unavailable(ssm: Any) -> None:
    authenticator = BearerAuthenticator("/does/not/exist", max_age_seconds=300, fetch=powertools_fetcher(ssm))
    with pytest.raises(AuthUnavailable):
        authenticator.authenticate(bearer("key-one"))


def test_importing_auth_does_not_import_the_parameters_utility() -> None:
    code = (
        "import sys; import reranker.auth; "
        "print('aws_lambda_powertools.utilities.parameters' in sys.modules, 'boto3' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HANDLER_DIR
    )
    assert result.stdout.split() == ["False", "False"]
