"""RerankerClient: build the native request, send it over a transport, retry what a retry can fix."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import NoCredentialsError, NoRegionError

from lambda_reranker_client.errors import RerankerError
from lambda_reranker_client.results import RerankResponse, parse_response
from lambda_reranker_client.transports import (
    HttpTransport,
    InvokeTransport,
    SignedHttpTransport,
    Transport,
    function_region,
    url_target,
)

__version__ = "0.1.0"

Passage = str | Mapping[str, Any]
# The function's timeout is 29 s (API Gateway's limit is 30 s): a read timeout just above it.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 35.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for throttling, ModelUnavailable and DeadlineExceeded only.

    ``max_attempts`` counts every attempt (1 = no retry); no retry starts once ``total_seconds`` would pass.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    total_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.total_seconds < 0:
            raise ValueError("delays and total_seconds must not be negative")

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1, 2, ...): uniform in [0, min(cap, base * 2^(n-1))]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (retry_number - 1)))  # noqa: S311


class RerankerClient:
    """Rerank passages with the deployed function; build it with ``from_url`` or ``from_function``."""

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    @classmethod
    def from_url(
        cls,
        url: str,
        region: str | None = None,
        *,
        service: str | None = None,
        session: botocore.session.Session | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        unsigned: bool = False,
    ) -> RerankerClient:
        """An API Gateway URL (stack output ``ApiUrl``, SigV4 service ``execute-api``) or a Function URL
        (``FunctionUrl``, service ``lambda``). The region comes from the host unless given; for other hosts
        (custom domains, local endpoints) pass ``service`` if it is not ``execute-api``, and a region unless
        the botocore session has one. Credentials come from botocore's usual chain (env, profile, role...).

        ``unsigned=True`` sends the requests without SigV4, so it needs no credentials and no region: a local
        endpoint (``./dev serve``) or one without IAM auth. ``region``, ``service`` and ``session`` sign, so
        they cannot be combined with it."""
        target = url_target(url)
        if unsigned:
            if region or service or session:
                raise ValueError("region, service and session are for signing: not with unsigned=True")
            transport = HttpTransport(target, connect_timeout=connect_timeout, read_timeout=read_timeout)
            return cls(transport, retry=retry)
        session = session or botocore.session.Session()
        if service:
            target = replace(target, service=service)
        region = region or target.region or session.get_config_variable("region")
        if not region:
            raise NoRegionError()
        credentials = session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        transport = SignedHttpTransport(
            target,
            region=region,
            credentials=credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return cls(transport, retry=retry)

    @classmethod
    def from_function(
        cls,
        name_or_arn: str,
        region: str | None = None,
        *,
        session: botocore.session.Session | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> RerankerClient:
        """Invoke the function directly (name, alias ARN or function ARN), as Step Functions does; needs
        ``lambda:InvokeFunction``. ``endpoint_url`` overrides the Lambda endpoint (botocore's option)."""
        session = session or botocore.session.Session()
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1},  # one retry policy: ours, with its time budget
            user_agent_extra=f"lambda-reranker-client/{__version__}",
        )
        lambda_client = session.create_client(
            "lambda",
            region_name=region or function_region(name_or_arn),
            endpoint_url=endpoint_url,
            config=config,
        )
        return cls(InvokeTransport(lambda_client, name_or_arn), retry=retry)

    def rerank(
        self,
        query: str,
        passages: Sequence[Passage],
        top_k: int | None = None,
        min_score: float | None = None,
        return_text: bool = False,
    ) -> RerankResponse:
        """Score ``passages`` (strings or ``{"text", "id"?, "meta"?}``) against ``query``, best first.

        ``top_k`` keeps the best k; ``min_score`` (in [0, 1]) drops results below it (``usage.filtered``
        counts them). Raises the service's error types (InvalidRequest, PayloadTooLarge, ...)."""
        payload: dict[str, Any] = {
            "query": query,
            "passages": [p if isinstance(p, str) else dict(p) for p in passages],
            "return_text": return_text,
        }
        if top_k is not None:
            payload["top_k"] = top_k
        if min_score is not None:
            payload["min_score"] = min_score
        return parse_response(self._send(payload))

    async def arerank(
        self,
        query: str,
        passages: Sequence[Passage],
        top_k: int | None = None,
        min_score: float | None = None,
        return_text: bool = False,
    ) -> RerankResponse:
        """``rerank`` in a worker thread (botocore is synchronous), for asyncio callers."""
        return await asyncio.to_thread(self.rerank, query, passages, top_k, min_score, return_text)

    def _send(self, payload: dict[str, Any]) -> object:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return self.transport.send(payload)
            except RerankerError as exc:
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                delay = self.retry.delay(attempt)
                if time.monotonic() - started + delay > self.retry.total_seconds:
                    raise
            self._sleep(delay)
            attempt += 1
