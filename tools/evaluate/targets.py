"""What gets evaluated: the local engine, a deployed HTTP endpoint (native or Cohere route), or a Lambda function.

Each target takes one query and its first-stage passages and answers with an Outcome: the passages' new order
(indexes into the list sent), whether the service fell back to unranked passages at its deadline, and how long
the request took. A failed request is an Outcome with ``order=None`` and the reason.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tools.invoke import FIXTURE_MODEL_DIR, HANDLER_DIR

DEFAULT_MODEL_DIR = FIXTURE_MODEL_DIR
DEFAULT_TIMEOUT_SECONDS = 60.0
# The model name sent on the Cohere route (the service only logs it).
COHERE_MODEL = "rerank-v3.5"


class TargetError(Exception):
    """The target cannot be set up (no model, no credentials, a bad URL); the message says what to do."""


@dataclass(frozen=True)
class Outcome:
    order: list[int] | None  # indexes of the passages sent, best first; None when the request failed
    latency_ms: float
    fallback: bool = False  # the service answered at its deadline with unscored passages left unranked
    error: str | None = None


class Target(Protocol):
    description: str

    def rerank(self, query: str, passages: Sequence[str]) -> Outcome: ...


def native_request(query: str, passages: Sequence[str]) -> dict[str, Any]:
    """The native /rerank body (and direct-invoke event): every passage, no text echoed back."""
    return {"query": query, "passages": list(passages), "return_text": False}


def order_from_native(answer: Any, count: int) -> tuple[list[int], bool]:
    """(order, fallback) from a native response; ValueError when it is not one."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise ValueError("the answer has no results list")
    order: list[int] = []
    fallback = False
    for result in answer["results"]:
        if not isinstance(result, dict) or not isinstance(result.get("index"), int):
            raise ValueError("a result has no integer index")
        order.append(result["index"])
        fallback = fallback or result.get("reranked") is False or result.get("score") is None
    return complete_order(order, count), fallback


def order_from_cohere(answer: Any, count: int) -> tuple[list[int], bool]:
    """(order, fallback) from a Cohere v2 response; its deadline fallback is announced in meta.warnings."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise ValueError("the answer has no results list")
    order: list[int] = []
    for result in answer["results"]:
        if not isinstance(result, dict) or not isinstance(result.get("index"), int):
            raise ValueError("a result has no integer index")
        order.append(result["index"])
    meta = answer.get("meta")
    fallback = isinstance(meta, dict) and bool(meta.get("warnings"))
    return complete_order(order, count), fallback


def complete_order(order: list[int], count: int) -> list[int]:
    """The answer's order, checked, with any passage it left out appended in first-stage order."""
    if len(set(order)) != len(order) or any(not 0 <= index < count for index in order):
        raise ValueError("the answer's indexes are out of range or repeated")
    seen = set(order)
    return order + [index for index in range(count) if index not in seen]


class LocalEngine:
    """handler/reranker/engine.py's CrossEncoder in this process: the model without any service around it."""

    def __init__(self, model_dir: Path | None = None) -> None:
        model_dir = model_dir or DEFAULT_MODEL_DIR
        self.model_dir = model_dir
        if str(HANDLER_DIR) not in sys.path:
            sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
        from reranker.engine import CrossEncoder
        from reranker.errors import RerankerError

        try:
            self._engine = CrossEncoder.load(model_dir)
        except RerankerError as exc:
            hint = " (run ./dev setup for the fixture models)" if model_dir == DEFAULT_MODEL_DIR else ""
            raise TargetError(f"cannot load the model in {model_dir}: {exc.public_message}{hint}") from exc
        self.description = f"local engine, model {model_dir}"

    def rerank(self, query: str, passages: Sequence[str]) -> Outcome:
        started = time.perf_counter()
        report = self._engine.score(query, passages)
        scores = [score if score is not None else float("-inf") for score in report.scores]
        order = sorted(
            range(len(passages)), key=lambda index: -scores[index]
        )  # stable: ties keep input order
        return Outcome(order, (time.perf_counter() - started) * 1000)


class HttpEndpoint:
    """A deployed API: native POST /rerank, or Cohere's POST /v2/rerank; SigV4-signed unless a bearer token is given."""

    def __init__(
        self,
        url: str,
        *,
        cohere: bool = False,
        token: str | None = None,
        region: str | None = None,
        unsigned: bool = False,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        import urllib3

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"--endpoint {url!r} is not an http(s) URL")
        self.cohere = cohere
        self.url = route_url(url, "/v2/rerank" if cohere else "/rerank")
        self.token = token
        self._signer = None if token or unsigned else SigV4Signer.for_url(self.url, region)
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=10, read=timeout_seconds)
        )
        auth = "bearer token" if token else "unsigned" if unsigned else f"SigV4 ({self._signer})"
        self.description = f"{'Cohere v2' if cohere else 'native'} endpoint {self.url}, {auth}"

    def rerank(self, query: str, passages: Sequence[str]) -> Outcome:
        import urllib3

        if self.cohere:
            payload: dict[str, Any] = {
                "model": COHERE_MODEL,
                "query": query,
                "documents": list(passages),
                "top_n": len(passages),
            }
        else:
            payload = native_request(query, passages)
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self._signer is not None:
            headers = self._signer.sign("POST", self.url, body, headers)
        started = time.perf_counter()
        try:
            response = self._http.request("POST", self.url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            return Outcome(None, _elapsed_ms(started), error=f"{type(exc).__name__}: {exc}")
        latency = _elapsed_ms(started)
        if response.status >= 400:
            return Outcome(None, latency, error=f"HTTP {response.status}: {_error_text(response.data)}")
        try:
            answer = json.loads(response.data)
            parse = order_from_cohere if self.cohere else order_from_native
            order, fallback = parse(answer, len(passages))
        except ValueError as exc:
            return Outcome(None, latency, error=f"unexpected answer: {exc}")
        return Outcome(order, latency, fallback)


def route_url(base: str, route: str) -> str:
    """The route under the API's base URL (the stack's ApiUrl); a URL that already names the route is kept."""
    stripped = base.rstrip("/")
    return stripped if stripped.endswith(route) else stripped + route


class SigV4Signer:
    """botocore's SigV4Auth with the caller's credentials; execute-api, or lambda for a Function URL."""

    def __init__(self, credentials: Any, service: str, region: str) -> None:
        self._credentials = credentials
        self.service = service
        self.region = region

    @classmethod
    def for_url(cls, url: str, region: str | None) -> SigV4Signer:
        import boto3

        host = urlsplit(url).hostname or ""
        service = "lambda" if ".lambda-url." in host else "execute-api"
        session = boto3.Session()
        region = region or region_from_host(host) or session.region_name
        if not region:
            raise TargetError(cannot_sign(host, "region", "pass --region"))
        credentials = session.get_credentials()
        if credentials is None:
            raise TargetError(
                cannot_sign(
                    host, "credentials", "configure them, or pass --token for a bearer-token deployment"
                )
            )
        return cls(credentials, service, region)

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        return dict(request.headers.items())

    def __str__(self) -> str:
        return f"{self.service}, {self.region}"


def cannot_sign(host: str, missing: str, remedy: str) -> str:
    """Why no signed request can be sent, and what to do; --unsigned first for a local endpoint."""
    if is_local_host(host):
        return (
            f"no AWS {missing} to sign requests to {host} with SigV4: a local endpoint (./dev serve) checks "
            "no signature, so pass --unsigned"
        )
    return f"no AWS {missing} for SigV4 signing: {remedy}, or --unsigned for an endpoint without auth"


def is_local_host(host: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_from_host(host: str) -> str | None:
    """us-east-1 from abc.execute-api.us-east-1.amazonaws.com or xyz.lambda-url.us-east-1.on.aws."""
    labels = host.split(".")
    for marker in ("execute-api", "lambda-url"):
        if marker in labels and labels.index(marker) + 1 < len(labels):
            return labels[labels.index(marker) + 1]
    return None


class LambdaFunction:
    """A direct Invoke of the function (name, ARN or alias ARN) with boto3, as Step Functions calls it."""

    def __init__(
        self, name: str, *, region: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.Session()
        region = region or _region_from_arn(name) or session.region_name
        if not region:
            raise TargetError("no AWS region for the Lambda client: pass --region")
        # AWS_ENDPOINT_URL_LAMBDA (honoured by boto3) points the client elsewhere, e.g. at a local stand-in.
        self._client = session.client(
            "lambda",
            region_name=region,
            config=Config(read_timeout=timeout_seconds, retries={"mode": "standard"}),
        )
        self.name = name
        self.description = f"Lambda function {name} ({region}), direct invoke"

    def rerank(self, query: str, passages: Sequence[str]) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        payload = json.dumps(native_request(query, passages)).encode("utf-8")
        started = time.perf_counter()
        try:
            response = self._client.invoke(FunctionName=self.name, Payload=payload)
            data = response["Payload"].read()
        except (BotoCoreError, ClientError) as exc:
            return Outcome(None, _elapsed_ms(started), error=f"{type(exc).__name__}: {exc}")
        latency = _elapsed_ms(started)
        if response.get("FunctionError"):
            return Outcome(None, latency, error=_error_text(data))
        try:
            order, fallback = order_from_native(json.loads(data), len(passages))
        except ValueError as exc:
            return Outcome(None, latency, error=f"unexpected answer: {exc}")
        return Outcome(order, latency, fallback)


def _region_from_arn(name: str) -> str | None:
    parts = name.split(":")
    return parts[3] if name.startswith("arn:") and len(parts) > 3 and parts[3] else None


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _error_text(data: bytes) -> str:
    """The error type and message of a native, Cohere or Lambda error body, else its first characters."""
    try:
        body = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('type')}: {error.get('message')}"
        if "errorType" in body:
            return f"{body.get('errorType')}: {body.get('errorMessage')}"
        if "message" in body:
            return str(body["message"])
    return json.dumps(body)[:200]
