"""Lambda entry point: load the model at init, detect the caller, route it, answer in the caller's dialect."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from reranker import adapters, runtime
from reranker import observability as obs
from reranker.calls import Call, CallerShape, report_error
from reranker.observability import logger, metrics, tracing
from reranker.routes import DIRECT, ROUTER
from reranker.runtime import INITIALIZATION_TYPE, STATE, reset
from reranker.service import VERSION, health

__all__ = ["STATE", "VERSION", "health", "lambda_handler", "reset"]

runtime.initialize()  # the model is in memory before the first request (and in a SnapStart snapshot)


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


def handle_http(event: Mapping[str, Any], context: Any, shape: CallerShape) -> dict[str, Any]:
    request = adapters.read_http_event(event, shape)
    logger.set_correlation_id(request.correlation_id)
    logger.append_keys(method=request.method, path=request.path)
    dialect = ROUTER.dialect_of(request.path, shape)  # errors before the body is read speak the route's words
    try:
        route = ROUTER.resolve(request.method, request.path, shape)
        runtime.authenticate(request.headers)
        payload = request.json_body() if route.reads_body else None
        dialect = route.dialect_for(payload)
        answer = route.operation(dialect, payload, request.call(context))
        response = adapters.write_answer(answer, dialect, request.correlation_id)
    except Exception as exc:  # noqa: BLE001 - the one place errors become HTTP answers
        response = adapters.write_error(report_error(exc), dialect, request.correlation_id)
    logger.append_keys(status=response["statusCode"])
    return response


def handle_direct(event: object, context: Any) -> dict[str, Any] | bytes:
    """The answer, or its JSON bytes when it echoes text the runtime could not encode (adapters.direct_payload)."""
    correlation_id = adapters.direct_correlation_id(event)
    if correlation_id:
        logger.set_correlation_id(correlation_id)
    try:
        payload = adapters.read_direct_event(event)
        call = Call(shape="direct", context=context, correlation_id=correlation_id)
        return adapters.write_direct(DIRECT.operation(DIRECT.dialect, payload, call), DIRECT.dialect)
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
