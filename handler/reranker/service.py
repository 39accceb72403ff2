"""The service behind the handler: the model runtime built at init, and the operations callers reach."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reranker import adapters, batch, cohere, schemas, tei
from reranker import observability as obs
from reranker.adapters import Call
from reranker.auth import BearerAuthenticator
from reranker.config import LongDocuments, Settings
from reranker.engine import CrossEncoder, EngineOptions, ScoreReport, WindowsUnsupported
from reranker.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelDownloadFailed,
    ModelUnavailable,
    RerankerError,
)
from reranker.model_store import ModelLocation, locate_model
from reranker.observability import logger, tracing
from reranker.score_cache import CachedScoreReport, ScoreCache, score_with_cache

VERSION = "0.1.0"
INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
# The OpenAPI description of every HTTP route, shipped in the package and read on the first GET /openapi.json.
OPENAPI_DOCUMENT = Path(__file__).with_name("openapi.json")


@dataclass
class Runtime:
    """Module state built at init (and snapshotted by SnapStart); ``failure`` when the model is unusable."""

    settings: Settings | None = None
    engine: CrossEncoder | None = None
    location: ModelLocation | None = None
    load_seconds: float = 0.0
    failure: ModelUnavailable | None = None
    retryable: bool = False
    failed_at: float = 0.0
    retry_after_seconds: float = Settings.model_load_retry_seconds  # MODEL_LOAD_RETRY_SECONDS
    load_metric_pending: bool = False
    environ: Mapping[str, str] | None = None
    cache: ScoreCache = field(default_factory=lambda: ScoreCache(0))
    authenticator: BearerAuthenticator | None = None
    trimmer: cohere.DocumentTrimmer | None = None  # loaded on the first Cohere request with a token budget


def load_runtime(environ: Mapping[str, str] | None = None) -> Runtime:
    """Read settings, find and load the model; on failure keep a ModelUnavailable to answer with."""
    started = time.perf_counter()
    settings: Settings | None = None
    try:
        settings = Settings.from_env(environ)
        location = locate_model(settings)
        engine = CrossEncoder.load(location.directory, engine_options(settings))
    except Exception as exc:  # noqa: BLE001 - any init failure becomes a clean ModelUnavailable
        return _failed_runtime(exc, environ, settings)
    seconds = time.perf_counter() - started
    logger.info(
        "model loaded",
        extra={
            "model": engine.name,
            "model_source": location.source,
            "archive_sha256": location.archive_sha256,
            "onnx_sha256": engine.sha256,
            "onnx_bytes": engine.onnx_bytes,
            "quantized": engine.quantized,
            "schedule": engine.schedule,
            "locate_seconds": round(location.seconds, 4),
            "load_seconds": round(seconds, 4),
            "bytes_downloaded": location.bytes_downloaded,
            "download_attempts": location.download_attempts,
        },
    )
    return Runtime(
        settings=settings,
        engine=engine,
        location=location,
        load_seconds=seconds,
        load_metric_pending=True,
        environ=environ,
        cache=ScoreCache.from_megabytes(settings.score_cache_mb),
        authenticator=build_authenticator(settings),
    )


def build_authenticator(settings: Settings) -> BearerAuthenticator | None:
    """AUTH_MODE=bearer: tokens from the SSM parameter (read on the first request, then cached)."""
    if settings.auth_mode != "bearer" or settings.auth_tokens_parameter is None:
        return None
    return BearerAuthenticator(
        settings.auth_tokens_parameter, max_age_seconds=settings.auth_tokens_max_age_seconds
    )


def authenticate(headers: Mapping[str, str]) -> None:
    """Raise Unauthorized unless the request carries an accepted bearer token (a no-op with AUTH_MODE=none)."""
    authenticator = STATE.runtime.authenticator
    if authenticator is not None:
        authenticator.authenticate(headers)


def _failed_runtime(exc: Exception, environ: Mapping[str, str] | None, settings: Settings | None) -> Runtime:
    kind = type(exc).__name__
    if isinstance(exc, RerankerError):
        logger.error("model unavailable: %s", exc.public_message, extra={"error_type": kind})
    else:
        logger.exception("model unavailable: unexpected %s while loading", kind, extra={"error_type": kind})
    failure = ModelUnavailable(
        f"the model is not available ({kind}); the function's init log has the details"
    )
    env = os.environ if environ is None else environ
    if env.get(INITIALIZATION_TYPE) == "snap-start":
        # Fail the version publish: a snapshot of a broken init would answer 503 in every restored copy.
        raise failure from exc
    return Runtime(
        failure=failure,
        retryable=isinstance(exc, ModelDownloadFailed),
        failed_at=time.monotonic(),
        retry_after_seconds=(settings or Settings()).model_load_retry_seconds,
        environ=environ,
    )


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        max_length=settings.engine_max_length,
        schedule=settings.engine_schedule,
        batch_size=settings.engine_batch_size,
        intra_op_threads=settings.ort_intra_op_threads,
        parallel_runs=settings.engine_parallel_runs,
        long_documents=settings.long_documents,
        window_max_per_passage=settings.window_max_per_passage,
        window_overlap_tokens=settings.window_overlap_tokens,
    )


@dataclass
class ModuleState:
    runtime: Runtime


STATE = ModuleState(runtime=Runtime(failure=ModelUnavailable("the model has not been loaded yet")))


def initialize(environ: Mapping[str, str] | None = None) -> None:
    """Build the runtime: settings, model, cache, auth. app.py calls it at import (the Lambda init phase)."""
    STATE.runtime = load_runtime(environ)


def reset(environ: Mapping[str, str] | None = None) -> None:
    """Test hook (like Powertools' reset helpers): rebuild the module state from ``environ``."""
    obs.reset()
    initialize(environ)


def ready_runtime() -> tuple[Settings, CrossEncoder, Runtime]:
    """The loaded model, or ModelUnavailable (after one more try if the init failure was transient)."""
    runtime = STATE.runtime
    if (
        runtime.failure is not None
        and runtime.retryable
        and time.monotonic() - runtime.failed_at >= runtime.retry_after_seconds
    ):
        logger.info("retrying the model load after a transient failure")
        runtime = STATE.runtime = load_runtime(runtime.environ)
    if runtime.failure is not None or runtime.settings is None or runtime.engine is None:
        message = runtime.failure.public_message if runtime.failure else "the model is not available"
        raise ModelUnavailable(message)  # a fresh error per request: tracebacks must not pile up
    return runtime.settings, runtime.engine, runtime


# --- operations: a parsed payload and the call in, a JSON-able answer out ----------------------------


def rerank(payload: object, call: Call) -> dict[str, Any]:
    """A native request, or a batch of them ({"requests": [...]} / Step Functions {"Items", "BatchInput"})."""
    settings, engine, runtime = ready_runtime()
    should_stop = deadline_check(call.context, settings)
    limits = schemas.Limits.from_settings(settings)
    tally = obs.RerankTally(cache_enabled=runtime.cache.enabled)
    shape = batch.batch_shape(payload)
    if shape is not None:
        assert isinstance(payload, Mapping)  # batch_shape only recognises objects
        parsed = batch.parse_batch(payload, shape, settings.max_batch_requests)
        tally.batch_size = len(parsed.items)

        def answer_item(index: int, item: object) -> dict[str, Any]:
            tally.position = index
            return score_and_rank(schemas.parse_rerank_request(item, limits), runtime, should_stop, tally)

        def item_error(exc: Exception) -> RerankerError:
            tally.item_errors += 1
            return report_error(exc)

        response = batch.run_batch(parsed, answer_item, item_error)
        tally.emit()
        batch.ensure_fits_state(shape, adapters.json_size(response))
        return response
    request = schemas.parse_rerank_request(payload, limits)
    response = score_and_rank(request, runtime, should_stop, tally)
    tally.emit()
    logger.append_keys(model=engine.name, top_k=request.top_k)
    return response


def rerank_cohere_v1(payload: object, call: Call) -> dict[str, Any]:
    return rerank_cohere(payload, call, 1)


def rerank_cohere_v2(payload: object, call: Call) -> dict[str, Any]:
    return rerank_cohere(payload, call, 2)


def rerank_cohere(payload: object, call: Call, version: cohere.ApiVersion) -> dict[str, Any]:
    """Cohere's /v1/rerank and /v2/rerank: the same scoring, Cohere's request and answer shapes."""
    settings, engine, runtime = ready_runtime()
    request = cohere.parse_cohere_request(payload, version, schemas.Limits.from_settings(settings))
    if request.ignored_fields:
        logger.append_keys(ignored_fields=list(request.ignored_fields))
    needs_tokens = request.max_tokens_per_doc is not None or request.max_chunks_per_doc is not None
    trimmer = document_trimmer(runtime, engine) if needs_tokens else None
    try:
        budgeted = cohere.apply_token_budgets(request, trimmer, settings.window_max_per_passage)
    except WindowsUnsupported as exc:
        raise mode_not_applicable(exc, engine, "max_chunks_per_doc") from exc
    native = replace(budgeted, long_documents=request.long_documents)
    tally = obs.RerankTally(cache_enabled=runtime.cache.enabled)
    response = score_and_rank(native, runtime, deadline_check(call.context, settings), tally)
    tally.emit()
    logger.append_keys(model=engine.name, top_k=native.top_k, cohere_model=request.model)
    request_id = getattr(call.context, "aws_request_id", None)
    return cohere.build_cohere_response(
        request, response, request_id if isinstance(request_id, str) else str(uuid.uuid4())
    )


def rerank_tei(payload: object, call: Call) -> list[dict[str, Any]]:
    """TEI's rerank API on POST /rerank (a body with texts): the same scoring, TEI's request and answer."""
    settings, engine, runtime = ready_runtime()
    request = tei.parse_tei_request(payload, schemas.Limits.from_settings(settings))
    if not request.truncate:
        tei.ensure_fits_without_truncation(
            engine.tokenization.whole_pair_lengths(request.native.query, request.texts), engine.max_length
        )
    tally = obs.RerankTally(cache_enabled=runtime.cache.enabled)
    scored = score_passages(
        request.native,
        runtime,
        deadline_check(call.context, settings),
        tally,
        with_logits=request.raw_scores,
        may_fall_back=False,
    )
    answer = tei.build_tei_response(request, scored.report.scores, scored.report.logits)
    tally.returned += len(answer)
    tally.emit()
    logger.append_keys(model=engine.name, api="tei", raw_scores=request.raw_scores)
    return answer


def score_and_rank(
    request: schemas.RerankRequest,
    runtime: Runtime,
    should_stop: Callable[[], bool] | None,
    tally: obs.RerankTally,
) -> dict[str, Any]:
    """Cache lookup, engine for the misses, deadline policy, ranking: one request's native answer."""
    engine = runtime.engine
    assert engine is not None  # ready_runtime() checked
    scored = score_passages(request, runtime, should_stop, tally)
    report = scored.report
    response = schemas.build_rerank_response(
        request,
        report.scores,
        model=engine.name,
        tokens=report.tokens,
        truncated=report.truncated,
        windows=report.windows,
        cached=scored.hits if runtime.cache.enabled else None,
    )
    tally.returned += len(response["results"])
    return response


def score_passages(
    request: schemas.RerankRequest,
    runtime: Runtime,
    should_stop: Callable[[], bool] | None,
    tally: obs.RerankTally,
    *,
    with_logits: bool = False,
    may_fall_back: bool = True,
) -> CachedScoreReport:
    """Scores (and raw logits when asked) for one request, with the deadline policy applied and tallied.

    Raw logits bypass the warm cache, which keeps scores only. ``may_fall_back`` False: a deadline that
    leaves passages unscored is DeadlineExceeded whatever the policy (for answers that cannot flag them).
    """
    settings, engine = runtime.settings, runtime.engine
    assert settings is not None and engine is not None  # ready_runtime() checked
    if settings.log_payloads:
        logger.info(
            "request payload (LOG_PAYLOADS)", extra={"query": request.query, "passages": request.scored_texts}
        )
    mode = request.long_documents or settings.long_documents
    tracing.annotate("model", engine.name)
    tracing.annotate("passages", len(request.passages))
    with tracing.subsegment("## engine.score"):
        try:
            if with_logits:
                scored = CachedScoreReport(
                    report=_score_with_logits(engine, request, mode, should_stop), hits=0, lookup_seconds=0.0
                )
            else:
                scored = score_with_cache(
                    engine,
                    runtime.cache,
                    request.query,
                    request.scored_texts,
                    long_documents=mode,
                    should_stop=should_stop,
                )
        except WindowsUnsupported as exc:
            raise mode_not_applicable(exc, engine, f'long_documents "{exc.mode}"') from exc
    report = scored.report
    unscored = sum(1 for score in report.scores if score is None)
    if unscored:
        if settings.deadline_policy == "error" or not may_fall_back:
            raise DeadlineExceeded(
                f"{unscored} of {len(request.passages)} passages were not scored before the deadline; "
                "send fewer passages or raise the function timeout"
            )
        logger.warning(
            "deadline reached: unscored passages returned unranked",
            extra={"unscored": unscored, "passages": len(request.passages), "batch_item": tally.position},
        )
        tally.deadline_fallbacks += 1
    tally.requests += 1
    tally.passages += len(request.passages)
    tally.tokens += report.tokens
    tally.windows += report.windows
    tally.truncated += report.truncated
    tally.pre_truncated += request.pre_truncated
    tally.unscored += unscored
    tally.cache_hits += scored.hits
    tally.cache_lookups += len(request.passages) if not with_logits else 0
    tally.tokenize_seconds += report.tokenize_seconds
    tally.inference_seconds += report.inference_seconds
    return scored


def _score_with_logits(
    engine: CrossEncoder,
    request: schemas.RerankRequest,
    mode: LongDocuments,
    should_stop: Callable[[], bool] | None,
) -> ScoreReport:
    # Out of time already: skip even the tokenizer (as score_with_cache does).
    if should_stop is not None and should_stop():
        return ScoreReport(scores=[None] * len(request.passages), logits=[None] * len(request.passages))
    return engine.score(
        request.query, request.scored_texts, long_documents=mode, should_stop=should_stop, with_logits=True
    )


def mode_not_applicable(exc: WindowsUnsupported, engine: CrossEncoder, mode: str) -> InvalidRequest:
    """A long-document mode this model cannot apply: the caller's choice (400), not an outage (503)."""
    return InvalidRequest(f"{mode} cannot be used with the model {engine.name}: {exc.reason}")


def document_trimmer(runtime: Runtime, engine: CrossEncoder) -> cohere.DocumentTrimmer:
    """The tokenizer that enforces Cohere token budgets, made the first time a request sets one."""
    if runtime.trimmer is None:
        runtime.trimmer = cohere.DocumentTrimmer.from_engine(engine)
    return runtime.trimmer


def health(payload: object, call: Call) -> dict[str, Any]:
    settings, engine, runtime = ready_runtime()
    location = runtime.location
    return {
        "status": "ok",
        "version": VERSION,
        "function_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "model": {
            "name": engine.name,
            "sha256": engine.sha256,
            "quantized": engine.quantized,
            "fixture": engine.fixture,
            "source": location.source if location else None,
            "archive_sha256": location.archive_sha256 if location else None,
            "load_seconds": round(runtime.load_seconds, 4),
        },
        "engine": engine.describe(),
        "limits": {
            "max_passages": settings.max_passages,
            "max_passage_chars": settings.max_passage_chars,
            "max_query_chars": settings.max_query_chars,
            "max_total_chars": settings.max_total_chars,
        },
        "deadline": {"policy": settings.deadline_policy, "margin_ms": settings.deadline_margin_ms},
        "long_documents": settings.long_documents,
        "max_batch_requests": settings.max_batch_requests,
        "auth": settings.auth_mode,
        "score_cache": {
            "enabled": runtime.cache.enabled,
            "capacity": runtime.cache.capacity,
            "entries": len(runtime.cache),
            "hits": runtime.cache.hits,
            "misses": runtime.cache.misses,
            "evictions": runtime.cache.evictions,
        },
    }


_openapi_cache: dict[str, Any] = {}


def openapi_document(payload: object, call: Call) -> dict[str, Any]:
    """GET /openapi.json: read once per environment on first use, so cold starts never pay for it."""
    if not _openapi_cache:
        document = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise TypeError(f"{OPENAPI_DOCUMENT.name} must hold a JSON object")
        _openapi_cache.update(document)
    return _openapi_cache


def deadline_check(context: Any, settings: Settings) -> Callable[[], bool] | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    stop_at = time.monotonic() + (remaining() - settings.deadline_margin_ms) / 1000
    return lambda: time.monotonic() >= stop_at


def report_error(exc: Exception) -> RerankerError:
    """Log and count an error once; return what the caller may see."""
    error = adapters.public_error(exc)
    client_error = error.http_status < 500
    if client_error:
        logger.warning(
            "request rejected", extra={"error_type": error.error_type, "error": error.public_message}
        )
    elif isinstance(exc, RerankerError):
        logger.error("request failed", extra={"error_type": error.error_type, "error": error.public_message})
    else:
        logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
    obs.count_error(error.error_type, client_error=client_error)
    return error
