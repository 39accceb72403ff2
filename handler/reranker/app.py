"""Lambda entry point: load the model at init, read the event, route it, write the answer in the caller's dialect."""

from __future__ import annotations

import os
import time
from typing import Any

from reranker import adapters, runtime, snapstart
from reranker import observability as obs
from reranker.adapters import DirectRequest, HttpRequest
from reranker.api import DIRECT, ROUTER
from reranker.calls import Call, report_error
from reranker.observability import logger, metrics, tracing
from reranker.runtime import INITIALIZATION_TYPE, STATE, reset
from reranker.service import VERSION, health

__all__ = ["STATE", "VERSION", "health", "lambda_handler", "reset"]

runtime.initialize()  # the model is in memory before the first request (and in a SnapStart snapshot)
snapstart.register_hooks()  # SnapStart: a warm-up run before the snapshot, fresh state after each restore


@tracing.capture_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> Any:
    started = time.perf_counter()
    request = adapters.read_event(event)
    logger.append_keys(caller=request.shape)
    tracing.annotate("caller", request.shape)
    try:
        if isinstance(request, DirectRequest):
            return handle_direct(request, context)
        return handle_http(request, context)
    finally:
        _emit_model_load_metric()
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name=obs.LATENCY, unit="Milliseconds", value=elapsed_ms)
        logger.info("request done", extra={"total_ms": round(elapsed_ms, 2)})


def handle_http(request: HttpRequest, context: Any) -> dict[str, Any]:
    logger.set_correlation_id(request.correlation_id)
    logger.append_keys(method=request.method, path=request.path)
    response = adapters.write_http(ROUTER.dispatch(request, context), request.correlation_id)
    logger.append_keys(status=response["statusCode"])
    return response


def handle_direct(request: DirectRequest, context: Any) -> dict[str, Any] | bytes:
    """The answer, or its JSON bytes when it echoes text the runtime could not encode (adapters.direct_payload)."""
    if request.correlation_id:
        logger.set_correlation_id(request.correlation_id)
    try:
        if request.body_error is not None:
            raise request.body_error
        call = Call(shape="direct", context=context, correlation_id=request.correlation_id)
        answer = DIRECT.operation(DIRECT.dialect, request.payload, call)
        return adapters.write_direct(answer, DIRECT.dialect)
    except Exception as exc:
        error = report_error(exc)
        if error is exc:
            raise
        raise error from exc  # Step Functions matches errorType: the public class name


def _emit_model_load_metric() -> None:
    """EMF is flushed per invocation, so the init's load time rides on the first one (not after SnapStart restore)."""
    load_seconds = runtime.take_load_seconds()
    if load_seconds is not None and os.environ.get(INITIALIZATION_TYPE) != "snap-start":
        metrics.add_metric(name=obs.MODEL_LOAD_TIME, unit="Milliseconds", value=load_seconds * 1000)
