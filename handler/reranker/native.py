"""The native wire format: one request, or a batch of them (``{"requests": [...]}``, Step Functions' ItemBatcher).

A batch answers each item in place, in order; an item that fails gets ``{"error": {"type", "message"}}``
instead of failing the batch (a Distributed Map would otherwise retry every item of it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reranker.calls import report_error
from reranker.dialect import Scoring
from reranker.errors import InvalidRequest, PayloadTooLarge, RerankerError
from reranker.json_text import json_size
from reranker.observability import logger
from reranker.schemas import RerankRequest, parse_rerank_request

type BatchShape = Literal["requests", "items"]

REQUESTS_KEY = "requests"
ITEMS_KEY = "Items"  # Step Functions ItemBatcher: {"Items": [...], "BatchInput": {...}}
BATCH_INPUT_KEY = "BatchInput"
CORRELATION_KEY = "correlation_id"
# A Step Functions task's result must fit the 256 KB state limit, or the Map run fails States.DataLimitExceeded.
STATE_LIMIT_BYTES = 256 * 1024
_ALLOWED_KEYS: dict[BatchShape, tuple[str, ...]] = {
    "requests": (REQUESTS_KEY, CORRELATION_KEY),
    "items": (ITEMS_KEY, BATCH_INPUT_KEY),
}


def batch_shape(payload: object) -> BatchShape | None:
    """Which batch shape a payload is, or None for a single request (native requests have neither key)."""
    if not isinstance(payload, Mapping):
        return None
    if REQUESTS_KEY in payload:
        return "requests"
    if ITEMS_KEY in payload:
        return "items"
    return None


@dataclass(frozen=True)
class Batch:
    shape: BatchShape
    items: list[object]  # each a native request payload, BatchInput defaults already applied


def parse_batch(payload: Mapping[str, Any], shape: BatchShape, max_requests: int) -> Batch:
    """Check the envelope (not the items: each is validated when it runs, and fails alone)."""
    unknown = [str(key)[:40] for key in payload if key not in _ALLOWED_KEYS[shape]]
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r} in a batch; allowed fields: {', '.join(_ALLOWED_KEYS[shape])}"
        )
    key = REQUESTS_KEY if shape == "requests" else ITEMS_KEY
    raw_items = payload[key]
    if not isinstance(raw_items, list):
        raise InvalidRequest(f"{key} must be a list of requests")
    if len(raw_items) > max_requests:
        raise PayloadTooLarge(f"{key} has {len(raw_items)} requests; the limit is {max_requests}")
    defaults = payload.get(BATCH_INPUT_KEY) if shape == "items" else None
    if defaults is None:
        return Batch(shape=shape, items=list(raw_items))
    if not isinstance(defaults, Mapping):
        raise InvalidRequest(f"{BATCH_INPUT_KEY} must be an object of request defaults (e.g. top_k)")
    items: list[object] = [{**defaults, **item} if isinstance(item, Mapping) else item for item in raw_items]
    return Batch(shape=shape, items=items)


def error_item(error: RerankerError) -> dict[str, Any]:
    return {"error": {"type": error.error_type, "message": error.public_message}}


def run_batch(
    batch: Batch,
    answer: Callable[[int, object], dict[str, Any]],
    on_error: Callable[[Exception], RerankerError],
) -> dict[str, Any]:
    """``{"responses": [...]}``: each item's answer (given its position), or its public error in place."""
    responses: list[dict[str, Any]] = []
    for index, item in enumerate(batch.items):
        try:
            responses.append(answer(index, item))
        except Exception as exc:  # noqa: BLE001 - one item's failure is that item's answer
            responses.append(error_item(on_error(exc)))
    return {"responses": responses}


def ensure_fits_state(shape: BatchShape, size: int) -> None:
    """An ItemBatcher answer above 256 KB would fail the Map run; say how to make it fit instead."""
    if shape == "items" and size > STATE_LIMIT_BYTES:
        raise PayloadTooLarge(
            f"the batch answer would be {size} bytes, above Step Functions' 256 KB state limit; lower "
            "ItemBatcher MaxItemsPerBatch, or set top_k / return_text=false in BatchInput"
        )


# --- the dialect ----------------------------------------------------------------------------------------------


type NativeRequest = RerankRequest | Batch


class NativeDialect:
    """``POST /rerank``, ``POST /`` (Function URLs) and direct invokes."""

    name = "native"
    size_advice = (
        'send "return_text": false (you have the texts), ask for fewer results (top_k) or send less meta'
    )

    def claims(self, payload: object) -> bool:
        return True

    def read(self, payload: object, scoring: Scoring) -> NativeRequest:
        """One request, or a checked batch envelope whose items are read when each runs."""
        shape = batch_shape(payload)
        if shape is None or not isinstance(payload, Mapping):
            return parse_rerank_request(payload, scoring.limits)
        return parse_batch(payload, shape, scoring.max_batch_requests)

    def answer(self, payload: object, scoring: Scoring) -> dict[str, Any]:
        request = self.read(payload, scoring)
        if isinstance(request, Batch):
            return self._answer_batch(request, scoring)
        response = scoring.rank(request)
        scoring.tally.emit()
        logger.append_keys(model=scoring.model, top_k=request.top_k)
        return response

    def _answer_batch(self, batch: Batch, scoring: Scoring) -> dict[str, Any]:
        tally = scoring.tally
        tally.batch_size = len(batch.items)

        def answer_item(index: int, item: object) -> dict[str, Any]:
            tally.position = index
            return scoring.rank(parse_rerank_request(item, scoring.limits))

        def item_error(exc: Exception) -> RerankerError:
            tally.item_errors += 1
            return report_error(exc)

        response = run_batch(batch, answer_item, item_error)
        tally.emit()
        ensure_fits_state(batch.shape, json_size(response))
        return response

    def error_body(self, error: RerankerError) -> tuple[int, dict[str, Any]]:
        return error.http_status, error_item(error)


NATIVE = NativeDialect()
