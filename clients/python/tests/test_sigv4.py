"""The stand-in's signature check itself: it accepts what botocore signs and refuses any change to it."""

from __future__ import annotations

import hashlib

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import ACCESS_KEY, REGION, SECRET_KEY
from sigv4 import SignatureRejected, verify

BODY = b'{"query": "q", "passages": ["a"]}'


def signed_headers(
    body: bytes = BODY, *, secret: str = SECRET_KEY, token: str | None = None
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:4567/rerank",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
        },
    )
    SigV4Auth(Credentials(ACCESS_KEY, secret, token), "execute-api", REGION).add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:4567"
    return headers


def check(headers: dict[str, str], body: bytes = BODY, path: str = "/rerank") -> str:
    return verify(
        method="POST", path=path, headers=headers, body=body, secrets={ACCESS_KEY: SECRET_KEY}
    ).service


def test_a_botocore_signature_is_accepted() -> None:
    assert check(signed_headers()) == "execute-api"
    assert check(signed_headers(token="session-token")) == "execute-api"


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        (lambda h, b, p: (h, b + b" ", p), "InvalidSignatureException"),  # body changed
        (
            lambda h, b, p: (
                {**h, "x-amz-content-sha256": hashlib.sha256(b + b"!").hexdigest()},
                b + b"!",
                p,
            ),
            "InvalidSignatureException",
        ),
        (
            lambda h, b, p: ({**h, "content-type": "text/plain"}, b, p),
            "InvalidSignatureException",
        ),  # signed header
        (lambda h, b, p: (h, b, "/v2/rerank"), "InvalidSignatureException"),  # path
        (lambda h, b, p: ({**h, "host": "127.0.0.1:4568"}, b, p), "InvalidSignatureException"),
        (
            lambda h, b, p: ({k: v for k, v in h.items() if k != "authorization"}, b, p),
            "MissingAuthenticationTokenException",
        ),
        (
            lambda h, b, p: (
                {**h, "authorization": h["authorization"].replace(ACCESS_KEY, "AKIDSOMEONEELSE00001")},
                b,
                p,
            ),
            "UnrecognizedClientException",
        ),
        (
            lambda h, b, p: ({**h, "x-amz-date": "20200101T000000Z"}, b, p),
            "InvalidSignatureException",
        ),  # expired
    ],
    ids=["body", "body-and-hash", "signed-header", "path", "host", "unsigned", "unknown-key", "expired"],
)
def test_any_change_is_refused(change, error_type: str) -> None:  # type: ignore[no-untyped-def]
    headers, body, path = change(signed_headers(), BODY, "/rerank")

    with pytest.raises(SignatureRejected) as caught:
        check(headers, body, path)

    assert caught.value.error_type == error_type


def test_a_signature_made_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureRejected, match="signature"):
        check(signed_headers(secret="not-the-secret"))
