"""The native wire format: one request, or a batch of them ({"requests"} / Step Functions {"Items"})."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reranker import batch, schemas
from reranker.calls import Call, report_error
from reranker.dialect import Scoring
from reranker.errors import RerankerError
from reranker.json_text import json_size
from reranker.observability import logger


@dataclass(frozen=True)
class NativeBatch:
    """A checked batch envelope; each item is read when it runs, and fails alone."""

    batch: batch.Batch


type NativeRequest = schemas.RerankRequest | NativeBatch


class NativeDialect:
    """``POST /rerank``, ``POST /`` (Function URLs) and direct invokes."""

    name = "native"
    size_advice = (
        'send "return_text": false (you have the texts), ask for fewer results (top_k) or send less meta'
    )

    def claims(self, payload: object) -> bool:
        return True

    def read(self, payload: object, scoring: Scoring) -> NativeRequest:
        shape = batch.batch_shape(payload)
        if shape is None:
            return schemas.parse_rerank_request(payload, scoring.limits)
        assert isinstance(payload, Mapping)  # batch_shape only recognises objects
        return NativeBatch(batch.parse_batch(payload, shape, scoring.max_batch_requests))

    def answer(self, request: NativeRequest, scoring: Scoring, call: Call) -> dict[str, Any]:
        tally = scoring.tally
        if isinstance(request, NativeBatch):
            return self._answer_batch(request.batch, scoring)
        response = scoring.rank(request)
        tally.emit()
        logger.append_keys(model=scoring.model, top_k=request.top_k)
        return response

    def _answer_batch(self, parsed: batch.Batch, scoring: Scoring) -> dict[str, Any]:
        tally = scoring.tally
        tally.batch_size = len(parsed.items)

        def answer_item(index: int, item: object) -> dict[str, Any]:
            tally.position = index
            return scoring.rank(schemas.parse_rerank_request(item, scoring.limits))

        def item_error(exc: Exception) -> RerankerError:
            tally.item_errors += 1
            return report_error(exc)

        response = batch.run_batch(parsed, answer_item, item_error)
        tally.emit()
        batch.ensure_fits_state(parsed.shape, json_size(response))
        return response

    def error_body(self, error: RerankerError) -> tuple[int, dict[str, Any]]:
        return error.http_status, {"error": {"type": error.error_type, "message": error.public_message}}


NATIVE = NativeDialect()
