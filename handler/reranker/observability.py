"""The one Logger, Metrics and tracing facade of the service, and the metric names."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from reranker.config import MODEL_S3_URI

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME") or "reranker"
METRICS_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Reranker"

# Metric names: the one place they are spelled (dashboards and alarms depend on them).
LATENCY = "Latency"
PASSAGES = "Passages"
TOKENS = "Tokens"
TRUNCATED_PASSAGES = "TruncatedPassages"
PRE_TRUNCATED_PASSAGES = "PreTruncatedPassages"
INVALID_REQUESTS = "InvalidRequests"  # 4xx, dimension ErrorType
SERVER_ERRORS = "ServerErrors"  # 5xx, dimension ErrorType
MODEL_LOAD_TIME = "ModelLoadTime"
DEADLINE_FALLBACKS = "DeadlineFallbacks"  # requests answered with unscored passages appended
UNSCORED_PASSAGES = "UnscoredPassages"  # passages the deadline left unscored
WINDOWS = "Windows"  # model runs: one per passage, more for long documents in window mode
SCORE_CACHE_HITS = "ScoreCacheHits"
SCORE_CACHE_MISSES = "ScoreCacheMisses"
SCORE_CACHE_HIT_RATE = "ScoreCacheHitRate"  # percent of looked-up passages, per invocation
BATCH_REQUESTS = "BatchRequests"  # requests in one {"requests"} / {"Items"} invocation
BATCH_ITEM_ERRORS = "BatchItemErrors"  # items answered with an error in place
FANOUT_SHARDS = "FanoutShards"  # shards of a fanned-out request, its own included
FANOUT_WORKER_ERRORS = "FanoutWorkerErrors"  # shards a worker failed or did not answer in time
FANOUT_THROTTLES = "FanoutThrottles"  # shard invokes Lambda throttled
FANOUT_LOCAL_FALLBACKS = "FanoutLocalFallbacks"  # failed shards scored by the coordinator itself
ERROR_TYPE_DIMENSION = "ErrorType"

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def count_error(error_type: str, *, client_error: bool) -> None:
    """One EMF record per error, with its type as a dimension (a bounded set: the public error types)."""
    name = INVALID_REQUESTS if client_error else SERVER_ERRORS
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE_NAME)
        metric.add_dimension(name=ERROR_TYPE_DIMENSION, value=error_type)


# --- tracing ---------------------------------------------------------------------------------------


class Tracing(Protocol):
    """What the service needs from a tracer; the X-Ray one costs ~0.2-1 s of imports, so it is optional."""

    def capture_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]: ...
    def annotate(self, key: str, value: str | int | float | bool) -> None: ...
    def metadata(self, key: str, value: Any) -> None: ...
    def subsegment(self, name: str) -> AbstractContextManager[Any]: ...


class NoTracing:
    """Tracing disabled: no aws_xray_sdk import, every call a no-op."""

    enabled = False

    def capture_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        return handler

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        return None

    def metadata(self, key: str, value: Any) -> None:
        return None

    @contextmanager
    def subsegment(self, name: str) -> Iterator[None]:
        yield None


class XRayTracing:
    """Powertools Tracer (X-Ray); responses are never captured (they hold passage text)."""

    enabled = True

    def __init__(self, *, patch_botocore: bool = False) -> None:
        from aws_lambda_powertools import Tracer

        # auto_patch would import and patch every library X-Ray knows (botocore alone costs ~0.35 s, httpx
        # ~0.17 s); the handler's only outbound calls are the S3 model download, so patch botocore for that.
        if patch_botocore:
            self.tracer = Tracer(service=SERVICE_NAME, patch_modules=["botocore"])
        else:
            self.tracer = Tracer(service=SERVICE_NAME, auto_patch=False)

    def capture_handler(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        return self.tracer.capture_lambda_handler(handler, capture_response=False, capture_error=True)

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        self.tracer.put_annotation(key=key, value=cast(Any, value))

    def metadata(self, key: str, value: Any) -> None:
        self.tracer.put_metadata(key=key, value=value)

    def subsegment(self, name: str) -> AbstractContextManager[Any]:
        manager: AbstractContextManager[Any] = self.tracer.provider.in_subsegment(name=name)
        return manager


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Powertools' own rule: on Lambda, not under SAM local / Chalice, and not POWERTOOLS_TRACE_DISABLED."""
    env = os.environ if environ is None else environ
    disabled = env.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    on_lambda = (
        bool(env.get("LAMBDA_TASK_ROOT"))
        and not env.get("AWS_SAM_LOCAL")
        and not env.get("AWS_CHALICE_CLI_MODE")
    )
    return on_lambda and not disabled


def build_tracing(environ: Mapping[str, str] | None = None) -> Tracing:
    env = os.environ if environ is None else environ
    if not tracing_enabled(env):
        return NoTracing()
    return XRayTracing(patch_botocore=bool(env.get(MODEL_S3_URI, "").strip()))


tracing: Tracing = build_tracing()


def reset() -> None:
    """Test hook: forget metrics not yet flushed and make the next invocation a cold start again."""
    from aws_lambda_powertools.logging import logger as logger_module
    from aws_lambda_powertools.metrics.provider import cold_start

    metrics.clear_metrics()
    cold_start.is_cold_start = True
    logger_module.is_cold_start = True
    logger.clear_state()


# --- per-invocation rerank counters -------------------------------------------------------------------


@dataclass
class RerankTally:
    """What one invocation scored (one request, or every item of a batch), emitted once as metrics and log keys."""

    requests: int = 0
    passages: int = 0
    tokens: int = 0
    windows: int = 0
    truncated: int = 0
    pre_truncated: int = 0
    unscored: int = 0
    deadline_fallbacks: int = 0
    cache_hits: int = 0
    cache_lookups: int = 0
    item_errors: int = 0
    returned: int = 0
    tokenize_seconds: float = 0.0
    inference_seconds: float = 0.0
    cache_enabled: bool = False
    batch_size: int | None = None  # requests in a batch invocation; None for a single request
    position: int | None = None  # the batch item being scored, for log lines

    def emit(self) -> None:
        count = MetricUnit.Count
        metrics.add_metric(name=PASSAGES, unit=count, value=self.passages)
        metrics.add_metric(name=TOKENS, unit=count, value=self.tokens)
        metrics.add_metric(name=WINDOWS, unit=count, value=self.windows)
        metrics.add_metric(name=TRUNCATED_PASSAGES, unit=count, value=self.truncated)
        metrics.add_metric(name=PRE_TRUNCATED_PASSAGES, unit=count, value=self.pre_truncated)
        if self.deadline_fallbacks:
            metrics.add_metric(name=DEADLINE_FALLBACKS, unit=count, value=self.deadline_fallbacks)
            metrics.add_metric(name=UNSCORED_PASSAGES, unit=count, value=self.unscored)
        if self.cache_enabled and self.cache_lookups:
            metrics.add_metric(name=SCORE_CACHE_HITS, unit=count, value=self.cache_hits)
            metrics.add_metric(
                name=SCORE_CACHE_MISSES, unit=count, value=self.cache_lookups - self.cache_hits
            )
            rate = 100.0 * self.cache_hits / self.cache_lookups
            metrics.add_metric(name=SCORE_CACHE_HIT_RATE, unit=MetricUnit.Percent, value=rate)
        if self.batch_size is not None:
            metrics.add_metric(name=BATCH_REQUESTS, unit=count, value=self.batch_size)
            metrics.add_metric(name=BATCH_ITEM_ERRORS, unit=count, value=self.item_errors)
        keys: dict[str, object] = {
            "passages": self.passages,
            "tokens": self.tokens,
            "windows": self.windows,
            "truncated": self.truncated,
            "pre_truncated": self.pre_truncated,
            "unscored": self.unscored,
            "returned": self.returned,
            "tokenize_ms": round(self.tokenize_seconds * 1000, 2),
            "inference_ms": round(self.inference_seconds * 1000, 2),
        }
        if self.cache_enabled:
            keys["cache_hits"] = self.cache_hits
        if self.batch_size is not None:
            keys.update(batch_requests=self.batch_size, batch_item_errors=self.item_errors)
        logger.append_keys(**keys)
