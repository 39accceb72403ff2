"""Bearer-token authentication for clients that cannot sign SigV4 (the Cohere SDK, LangChain, LlamaIndex).

The accepted tokens live in one SSM SecureString parameter (one token per line, or comma-separated, so a
key can be rotated by listing old and new together). Powertools Parameters reads and caches it for
``max_age`` seconds; it is imported on first use, so a deployment without AUTH_MODE=bearer never pays for it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

from reranker.errors import InternalError, Unauthorized

AUTHORIZATION_HEADER = "authorization"
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
_TOKEN_SEPARATORS = re.compile(r"[\s,]+")

# fetch(parameter name, max age in seconds) -> the decrypted parameter value
type TokenFetcher = Callable[[str, int], str]


class AuthUnavailable(InternalError):
    """The token parameter could not be read (throttling, permissions, missing): a 5xx, never a 401."""


def powertools_fetcher(boto3_client: Any | None = None) -> TokenFetcher:
    """get_parameter(name, decrypt=True, max_age=...) from Powertools; an injected boto3 client for tests."""

    provider: Any = None

    def fetch(name: str, max_age: int) -> str:
        nonlocal provider
        from aws_lambda_powertools.utilities import parameters

        if boto3_client is None:
            value = parameters.get_parameter(name, decrypt=True, max_age=max_age)
        else:
            provider = provider or parameters.SSMProvider(boto3_client=boto3_client)
            value = provider.get(name, decrypt=True, max_age=max_age)
        if not isinstance(value, str):
            raise TypeError(f"parameter {name} is not a string parameter")
        return value

    return fetch


def parse_tokens(value: str) -> tuple[bytes, ...]:
    """The sha256 digests of the tokens a parameter value lists (digests: equal length, so no length leak)."""
    tokens = [token for token in _TOKEN_SEPARATORS.split(value) if token]
    return tuple(hashlib.sha256(token.encode("utf-8")).digest() for token in tokens)


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (headers lower-cased), or None."""
    header = headers.get(AUTHORIZATION_HEADER)
    if header is None:
        return None
    match = _BEARER.match(header)
    return match.group(1) if match else None


class BearerAuthenticator:
    """Checks a request's bearer token against the SSM parameter's tokens in constant time."""

    def __init__(
        self, parameter_name: str, *, max_age_seconds: int, fetch: TokenFetcher | None = None
    ) -> None:
        self.parameter_name = parameter_name
        self.max_age_seconds = max_age_seconds
        self._fetch = fetch or powertools_fetcher()
        self._raw: str | None = None
        self._digests: tuple[bytes, ...] = ()

    def tokens(self) -> tuple[bytes, ...]:
        """The accepted token digests; the fetcher caches the parameter, this only re-parses on change."""
        try:
            raw = self._fetch(self.parameter_name, self.max_age_seconds)
        except Exception as exc:  # botocore, Powertools and transform errors alike
            raise AuthUnavailable(
                "authentication is temporarily unavailable (the token parameter could not be read)"
            ) from exc
        if raw != self._raw:
            self._raw, self._digests = raw, parse_tokens(raw)
        return self._digests

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Return if the request carries an accepted token; raise Unauthorized (401) otherwise."""
        token = presented_token(headers)
        if token is None:
            raise Unauthorized("missing bearer token: send the header 'Authorization: Bearer <api key>'")
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        matched = False
        for accepted in self.tokens():  # every token is compared: timing does not say which one matched
            matched |= hmac.compare_digest(presented, accepted)
        if not matched:
            raise Unauthorized("invalid bearer token")
