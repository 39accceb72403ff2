"""Invoking this function's own version or alias for a shard: botocore's Lambda client, made on first use.

The client honours ``AWS_ENDPOINT_URL_LAMBDA`` (botocore reads it), retries nothing (a failed shard is scored
by the coordinator instead) and every outcome is classified once: an answer, throttled, or an error.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

type Failure = Literal["throttled", "timeout", "error"]

# Lambda's own maximum timeout: a worker never runs longer, so a read never needs to wait longer.
LAMBDA_MAX_SECONDS = 900.0
_THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "EC2ThrottledException"})
_TIMEOUT_ERRORS = frozenset({"ReadTimeoutError", "ConnectTimeoutError"})


@dataclass(frozen=True)
class InvokeResult:
    """A shard invoke's outcome: the function's answer, or why there is none."""

    answer: dict[str, Any] | None
    failure: Failure | None = None
    detail: str = ""  # an error code or class name, never the payload
    seconds: float = 0.0


def region_of(function_arn: str) -> str:
    """The region field of a Lambda ARN (arn:partition:lambda:REGION:account:function:name[:qualifier])."""
    parts = function_arn.split(":")
    if len(parts) < 7 or parts[2] != "lambda" or not parts[3]:
        raise ValueError("not a Lambda function ARN")
    return parts[3]


class LambdaInvoker:
    """Synchronous invokes of a function ARN (qualified: the version or alias the coordinator runs as)."""

    def __init__(
        self,
        *,
        max_connections: int,
        connect_timeout_seconds: float,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connect_timeout_seconds = connect_timeout_seconds
        self._client_factory = client_factory or self._botocore_client
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _botocore_client(self, region: str) -> Any:
        # Imported here: botocore costs ~0.35 s of imports, paid only by a deployment with fan-out on.
        import botocore.session
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=LAMBDA_MAX_SECONDS,
            retries={"total_max_attempts": 1},
            max_pool_connections=max(10, self.max_connections),
        )
        return botocore.session.get_session().create_client("lambda", region_name=region, config=config)

    def client(self, function_arn: str) -> Any:
        region = region_of(function_arn)
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._client_factory(region)
            return self._clients[region]

    def invoke(self, function_arn: str, payload: dict[str, Any]) -> InvokeResult:
        started = time.perf_counter()
        try:
            response = self.client(function_arn).invoke(
                FunctionName=function_arn,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode("utf-8"),
            )
            body = response["Payload"].read()
        except Exception as exc:  # noqa: BLE001 - every transport failure is classified, none escapes
            return InvokeResult(None, *classify(exc), seconds=time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if response.get("FunctionError"):
            return InvokeResult(None, "error", _error_type(body), seconds)
        try:
            answer = json.loads(body)
        except ValueError:
            return InvokeResult(None, "error", "unreadable answer", seconds)
        if not isinstance(answer, dict):
            return InvokeResult(None, "error", "unexpected answer", seconds)
        return InvokeResult(answer, seconds=seconds)


def classify(exc: Exception) -> tuple[Failure, str]:
    """What a failed invoke means: Lambda throttled it, it timed out, or it failed otherwise."""
    error = getattr(exc, "response", None)
    code = error.get("Error", {}).get("Code") if isinstance(error, dict) else None
    if isinstance(code, str):
        return ("throttled" if code in _THROTTLE_CODES else "error"), code
    name = type(exc).__name__
    if name in _TIMEOUT_ERRORS:
        return "timeout", name
    return "error", name


def _error_type(body: bytes) -> str:
    try:
        error = json.loads(body)
    except ValueError:
        return "unhandled"
    kind = error.get("errorType") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else "unhandled"
