"""Lambda entry point: load the model at init, detect the caller, dispatch the operation, shape the answer."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from reranker import adapters, tei
from reranker import observability as obs
from reranker.adapters import Call, Route, Router
from reranker.observability import logger, metrics, tracing
from reranker.service import (
    INITIALIZATION_TYPE,
    STATE,
    VERSION,
    authenticate,
    health,
    initialize,
    openapi_document,
    report_error,
    rerank,
    rerank_cohere_v1,
    rerank_cohere_v2,
    rerank_tei,
    reset,
)

__all__ = ["STATE", "VERSION", "health", "lambda_handler", "reset"]

initialize()  # the model is in memory before the first request (and in a SnapStart snapshot)

ROUTER = Router(
    [
        Route("POST", "/rerank", rerank),
        Route("GET", "/health", health, reads_body=False),
        Route("POST", "/v1/rerank", rerank_cohere_v1, error_style="cohere"),
        Route("POST", "/v2/rerank", rerank_cohere_v2, error_style="cohere"),
        Route("GET", "/openapi.json", openapi_document, reads_body=False),
        # A Function URL has no API Gateway routes: its callers post to the root.
        Route("POST", "/", rerank, callers=("function_url",)),
    ]
)


def select_direct_operation(event: object) -> adapters.Operation:
    """Direct invokes carry the request itself; rerank() also answers the batch shapes ({"requests"}, {"Items"})."""
    return rerank


# --- the handler -----------------------------------------------------------------------------------


@tracing.capture_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> Any:
    started = time.perf_counter()
    _emit_model_load_metric()
    shape = adapters.detect_shape(event)
    logger.append_keys(caller=shape)
    tracing.annotate("caller", shape)
    try:
        if shape == "direct":
            return handle_direct(event, context)
        return handle_http(event, context, shape)
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name=obs.LATENCY, unit="Milliseconds", value=elapsed_ms)
        logger.info("request done", extra={"total_ms": round(elapsed_ms, 2)})


def handle_http(event: Mapping[str, Any], context: Any, shape: adapters.CallerShape) -> dict[str, Any]:
    request = adapters.read_http_event(event, shape)
    logger.set_correlation_id(request.correlation_id)
    logger.append_keys(method=request.method, path=request.path)
    style = ROUTER.error_style(request.path, shape)
    speaks_tei = False
    try:
        route = ROUTER.resolve(request.method, request.path, shape)
        authenticate(request.headers)
        payload = adapters.read_json_body(request) if route.reads_body else None
        call = Call(
            shape=shape, context=context, headers=request.headers, correlation_id=request.correlation_id
        )
        # The native rerank route also answers TEI's rerank API: a body with texts (and no passages).
        speaks_tei = route.operation is rerank and tei.is_tei_request(payload)
        answer: object = rerank_tei(payload, call) if speaks_tei else route.operation(payload, call)
        response = adapters.http_response(200, answer, correlation_id=request.correlation_id)
        size_advice = adapters.COHERE_SIZE_ADVICE if style == "cohere" else adapters.NATIVE_SIZE_ADVICE
        adapters.ensure_response_fits(adapters.http_payload_size(response), size_advice)
    except Exception as exc:  # noqa: BLE001 - the one place errors become HTTP answers
        error = report_error(exc)
        if speaks_tei:
            status, body = tei.error_status_and_body(error)
            logger.append_keys(status=status)
            return adapters.http_response(status, body, correlation_id=request.correlation_id)
        logger.append_keys(status=error.http_status)
        return adapters.http_error_response(error, style, request.correlation_id)
    logger.append_keys(status=200)
    return response


def handle_direct(event: object, context: Any) -> dict[str, Any] | bytes:
    """The answer, or its JSON bytes when it echoes text the runtime could not encode (adapters.direct_payload)."""
    correlation_id = adapters.direct_correlation_id(event)
    if correlation_id:
        logger.set_correlation_id(correlation_id)
    try:
        payload = adapters.read_direct_event(event)
        answer = select_direct_operation(payload)(
            payload, Call(shape="direct", context=context, correlation_id=correlation_id)
        )
        response, size = adapters.direct_payload(answer)
        adapters.ensure_response_fits(size)
    except Exception as exc:
        error = report_error(exc)
        if error is exc:
            raise
        raise error from exc  # Step Functions matches errorType: the public class name
    return response


def _emit_model_load_metric() -> None:
    """EMF is flushed per invocation, so the init's load time rides on the first one (not after SnapStart restore)."""
    runtime = STATE.runtime
    if not runtime.load_metric_pending:
        return
    runtime.load_metric_pending = False
    if os.environ.get(INITIALIZATION_TYPE) != "snap-start":
        metrics.add_metric(name=obs.MODEL_LOAD_TIME, unit="Milliseconds", value=runtime.load_seconds * 1000)
