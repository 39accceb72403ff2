"""The ways to reach the function: an HTTPS POST, SigV4-signed (API Gateway, Function URL) or not (a local
endpoint such as ``./dev serve``), or a Lambda Invoke."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import URLLib3Session

from lambda_reranker_client.errors import RerankerError, ServiceError, TransportError, error_from_answer

_API_GATEWAY_HOST = re.compile(r"^[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_FUNCTION_URL_HOST = re.compile(r"^[^.]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:([a-z0-9-]+):\d{12}:function:")
RERANK_PATH = "/rerank"


class Transport(Protocol):
    def send(self, payload: dict[str, Any]) -> object:
        """Send one native request; the decoded answer, or a RerankerError."""
        ...


@dataclass(frozen=True)
class UrlTarget:
    """Where to POST and how to sign it: the rerank URL, the SigV4 service and region (None = unknown)."""

    url: str
    service: str
    region: str | None


def url_target(url: str) -> UrlTarget:
    """API Gateway hosts sign for ``execute-api``, Function URLs for ``lambda``; other hosts (custom domains,
    local endpoints) for ``execute-api`` with the region left to the caller. ``/rerank`` is appended unless there."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname.lower()
    path = parts.path.rstrip("/")
    if not path.endswith(RERANK_PATH):
        path += RERANK_PATH
    target = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    if match := _API_GATEWAY_HOST.match(host):
        return UrlTarget(target, "execute-api", match.group(1))
    if match := _FUNCTION_URL_HOST.match(host):
        return UrlTarget(target, "lambda", match.group(1))
    return UrlTarget(target, "execute-api", None)


def function_region(name_or_arn: str) -> str | None:
    """The region named in a function ARN (None for a bare name)."""
    match = _FUNCTION_ARN.match(name_or_arn)
    return match.group(1) if match else None


class HttpTransport:
    """POST the request as JSON, unsigned: a local endpoint (``./dev serve``) or one whose auth is not IAM."""

    def __init__(self, target: UrlTarget, *, connect_timeout: float, read_timeout: float) -> None:
        self.target = target
        self._http = URLLib3Session(timeout=(connect_timeout, read_timeout))

    def send(self, payload: dict[str, Any]) -> object:
        body = json.dumps(payload).encode("utf-8")
        request = AWSRequest(
            method="POST", url=self.target.url, data=body, headers={"Content-Type": "application/json"}
        )
        self._authorize(request, body)
        try:
            response = self._http.send(request.prepare())
        except BotoCoreError as exc:
            raise TransportError(str(exc), error_type=type(exc).__name__) from exc
        content = response.content
        if response.status_code == 200:
            return _decode(content)
        raise _http_error(response.status_code, dict(response.headers.items()), content)

    def _authorize(self, request: AWSRequest, body: bytes) -> None:
        """Nothing to add: the request goes out as it is."""


class SignedHttpTransport(HttpTransport):
    """The same POST, signed with SigV4 on every attempt (a signature is valid for 5 minutes)."""

    def __init__(
        self,
        target: UrlTarget,
        *,
        region: str,
        credentials: Credentials,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        super().__init__(target, connect_timeout=connect_timeout, read_timeout=read_timeout)
        self.region = region
        self._credentials = credentials

    def _authorize(self, request: AWSRequest, body: bytes) -> None:
        # Function URLs want the payload hash signed for POST; harmless for API Gateway.
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        SigV4Auth(self._credentials, self.target.service, self.region).add_auth(request)


def _http_error(status: int, headers: dict[str, str], content: bytes) -> RerankerError:
    """Native ``{"error": {"type", "message"}}``, else AWS's ``{"message"}`` with ``x-amzn-ErrorType``."""
    error_type: str | None = None
    message = f"HTTP {status}"
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error_type = str(error.get("type") or "") or None
            message = str(error.get("message") or message)
        elif isinstance(body.get("message"), str):
            message = body["message"]
    if error_type is None:
        aws_type = {name.lower(): value for name, value in headers.items()}.get("x-amzn-errortype", "")
        error_type = aws_type.split(":", 1)[0] or None
    return error_from_answer(error_type, message, status)


class InvokeTransport:
    """Lambda ``Invoke`` (RequestResponse) through botocore's client; its own retries are off (ours decide)."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name

    def send(self, payload: dict[str, Any]) -> object:
        try:
            response = self.lambda_client.invoke(
                FunctionName=self.function_name, Payload=json.dumps(payload).encode("utf-8")
            )
            content = response["Payload"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise error_from_answer(error.get("Code"), str(error.get("Message") or exc), status) from exc
        except BotoCoreError as exc:
            raise TransportError(str(exc), error_type=type(exc).__name__) from exc
        if response.get("FunctionError"):
            # The function raised: Lambda's payload {"errorType", "errorMessage"}; errorType is the class name.
            body = _decode(content)
            if not isinstance(body, dict):
                raise ServiceError(f"function error: {body!r}", error_type=str(response["FunctionError"]))
            raise error_from_answer(
                str(body.get("errorType") or response["FunctionError"]), str(body.get("errorMessage") or "")
            )
        return _decode(content)


def _decode(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError as exc:
        raise ServiceError("the reranker answered with invalid JSON", error_type="BadResponse") from exc
