"""Hugging Face text-embeddings-inference's rerank wire format <-> native requests, so TEI clients need no change.

TEI's ``POST /rerank`` takes ``{"query", "texts", "raw_scores", "return_text", "truncate"}`` and answers a
bare list ``[{"index", "score", "text"?}]`` sorted by score; its errors are ``{"error", "error_type"}``
with 413 for validation and 422 for bodies it cannot read. A body with ``texts`` and no ``passages`` on
our ``POST /rerank`` is such a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reranker.contract import TEI_REQUEST
from reranker.dialect import Scoring
from reranker.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelUnavailable,
    PayloadTooLarge,
    RerankerError,
)
from reranker.observability import logger
from reranker.schemas import FieldNames, Limits, RerankRequest, parse_rerank_request

# TEI's ErrorType values (serialized lower-case) and the statuses it answers them with.
type TeiErrorType = Literal["validation", "tokenizer", "backend", "overloaded", "unhealthy"]

TEXTS_KEY = "texts"
PASSAGES_KEY = "passages"
# TEI ignores fields it does not know (serde's default), and so do we: clients add fields over time.
FIELDS = TEI_REQUEST.names  # declared in contract.py
# Read case-insensitively, as TEI's serde does; only right is served (the contract documents just that).
TRUNCATION_DIRECTIONS = ("right", "left")
# What a TEI caller calls the native fields, so the shared validation speaks TEI's words.
TEI_NAMES = FieldNames(passages="texts")


def is_tei_request(payload: object) -> bool:
    """A TEI rerank body: an object with ``texts`` and without ``passages`` (which makes it native)."""
    return isinstance(payload, Mapping) and TEXTS_KEY in payload and PASSAGES_KEY not in payload


@dataclass(frozen=True)
class TeiRequest:
    native: RerankRequest  # the texts as passages; return_text False (the TEI answer echoes them itself)
    texts: tuple[str, ...]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True  # omitted or null: truncate, like a TEI server started with --auto-truncate


def parse_tei_request(payload: object, limits: Limits) -> TeiRequest:
    """Validate a decoded TEI body; InvalidRequest (422 in TEI's shape) or PayloadTooLarge (413)."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    raw_scores: bool = TEI_REQUEST["raw_scores"].read(payload)
    return_text: bool = TEI_REQUEST["return_text"].read(payload)
    truncate: bool = TEI_REQUEST["truncate"].read(payload)
    direction = payload.get("truncation_direction")
    if direction is not None:
        if not isinstance(direction, str) or direction.lower() not in TRUNCATION_DIRECTIONS:
            raise InvalidRequest("truncation_direction must be Right or Left")
        if direction.lower() == "left":
            raise InvalidRequest(
                "truncation_direction Left is not supported: texts keep their beginning (send Right or omit it)"
            )
    if "query" not in payload:  # null goes on to the native check, which says the same
        raise InvalidRequest("query is required")
    declared_texts = TEI_REQUEST[TEXTS_KEY]
    texts: list[str] = declared_texts.check_list(payload[TEXTS_KEY])
    if declared_texts.min_length is not None and len(texts) < declared_texts.min_length:
        raise InvalidRequest("`texts` cannot be empty")  # TEI's own wording
    if len(texts) > limits.max_passages:
        # TEI's own wording for its max_client_batch_size check.
        raise PayloadTooLarge(f"batch size {len(texts)} > maximum allowed batch size {limits.max_passages}")
    native_payload = {"query": payload["query"], "passages": texts, "return_text": False}
    native = parse_rerank_request(native_payload, limits, TEI_NAMES)
    return TeiRequest(
        native=native,
        texts=tuple(texts),
        raw_scores=raw_scores,
        return_text=return_text,
        truncate=truncate,
    )


def ensure_fits_without_truncation(pair_lengths: Sequence[int], max_length: int) -> None:
    """``truncate: false``: refuse (413, TEI's message) a text whose pair with the query exceeds the limit.

    ``pair_lengths``: each text's whole (untruncated) pair with the query, in tokens.
    """
    for index, length in enumerate(pair_lengths):
        if length > max_length:
            raise PayloadTooLarge(
                f"`inputs` must have less than {max_length} tokens. Given: {length} "
                f"(texts[{index}] with the query); send truncate: true or a shorter text"
            )


def build_tei_response(
    request: TeiRequest, scores: Sequence[float | None], logits: Sequence[float | None] | None
) -> list[dict[str, Any]]:
    """TEI's answer: every text, best first (ties keep input order), ``score`` the logit with raw_scores.

    A TEI answer has no way to mark a text left unscored, so a caller never gets one: the deadline is an
    error on this route (see TeiDialect.answer).
    """
    values = logits if request.raw_scores else scores
    if values is None or len(values) != len(request.texts):
        raise ValueError(f"got {0 if values is None else len(values)} scores for {len(request.texts)} texts")
    ranks: list[dict[str, Any]] = []
    for index, value in enumerate(values):
        if value is None:
            raise ValueError(f"texts[{index}] has no score")
        rank: dict[str, Any] = {"index": index, "score": float(value)}
        if request.return_text:
            rank["text"] = request.texts[index]
        ranks.append(rank)
    ranks.sort(key=lambda rank: -rank["score"])  # stable: ties keep input order
    return ranks


def error_status_and_body(error: RerankerError) -> tuple[int, dict[str, str]]:
    """TEI's error answer: 422 for a body it cannot use, 413 for limits, 503 unhealthy; ours otherwise."""
    if isinstance(error, PayloadTooLarge):
        return 413, {"error": error.public_message, "error_type": "validation"}
    if isinstance(error, InvalidRequest):
        return 422, {"error": error.public_message, "error_type": "validation"}
    error_type: TeiErrorType = "backend"
    if isinstance(error, ModelUnavailable):
        error_type = "unhealthy"
    elif isinstance(error, DeadlineExceeded):
        error_type = "overloaded"
    elif error.http_status < 500:
        error_type = "validation"
    return error.http_status, {"error": error.public_message, "error_type": error_type}


class TeiDialect:
    """TEI's rerank API on ``POST /rerank`` (a body with texts): the same scoring, TEI's request and answer."""

    name = "tei"
    # The route it shares with the native format: a too-large answer gets the same advice (return_text).
    size_advice = (
        'send "return_text": false (you have the texts), ask for fewer results (top_k) or send less meta'
    )

    def claims(self, payload: object) -> bool:
        return is_tei_request(payload)

    def read(self, payload: object, scoring: Scoring) -> TeiRequest:
        return parse_tei_request(payload, scoring.limits)

    def answer(self, payload: object, scoring: Scoring) -> list[dict[str, Any]]:
        request = self.read(payload, scoring)
        if not request.truncate:
            ensure_fits_without_truncation(
                scoring.whole_pair_lengths(request.native.query, request.texts), scoring.max_length
            )
        scores, logits = scoring.score_every_passage(request.native, with_logits=request.raw_scores)
        answer = build_tei_response(request, scores, logits)
        scoring.tally.returned += len(answer)
        scoring.tally.emit()
        logger.append_keys(model=scoring.model, api="tei", raw_scores=request.raw_scores)
        return answer

    def error_body(self, error: RerankerError) -> tuple[int, dict[str, str]]:
        return error_status_and_body(error)


TEI = TeiDialect()
