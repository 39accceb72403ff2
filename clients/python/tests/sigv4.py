"""Check a received SigV4 signature the way AWS does: recompute it with botocore's signer and compare."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)


class SignatureRejected(Exception):
    """Why AWS would answer 403; ``error_type`` is the x-amzn-ErrorType it would send."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class SignedBy:
    access_key: str
    region: str
    service: str


def verify(
    *, method: str, path: str, headers: Mapping[str, str], body: bytes, secrets: Mapping[str, str]
) -> SignedBy:
    """The key, region and service a valid request was signed for; SignatureRejected otherwise.

    ``headers`` are the received ones (lower-case names); ``path`` is the raw request target (path?query).
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise SignatureRejected("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(authorization)
    if not match:
        raise SignatureRejected("IncompleteSignatureException", "Authorization header is malformed")
    secret = secrets.get(match["key"])
    if secret is None:
        raise SignatureRejected(
            "UnrecognizedClientException", "The security token included in the request is invalid"
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError as exc:
        raise SignatureRejected("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from exc
    if abs(datetime.datetime.now(datetime.timezone.utc) - signed_at) > MAX_CLOCK_SKEW:
        raise SignatureRejected("InvalidSignatureException", "Signature expired")
    if match["date"] != amz_date[:8]:
        raise SignatureRejected(
            "InvalidSignatureException", "Credential scope date does not match X-Amz-Date"
        )
    signed_names = match["signed"].split(";")
    if "host" not in signed_names or any(name not in headers for name in signed_names):
        raise SignatureRejected("IncompleteSignatureException", "a signed header is missing")
    content_sha = headers.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        raise SignatureRejected("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the body")
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}",
        data=body,
        headers={name: headers[name] for name in signed_names},
    )
    request.context["timestamp"] = amz_date
    token = headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(match["key"], secret, token), match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureRejected(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return SignedBy(match["key"], match["region"], match["service"])
