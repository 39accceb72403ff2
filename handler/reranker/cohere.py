"""Cohere's rerank wire format (v1 and v2) <-> native requests and responses, so switching is a base URL change."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from reranker.config import LongDocuments
from reranker.contract import (
    COHERE_V1_REQUEST,
    COHERE_V2_LEGACY_FIELDS,
    COHERE_V2_REQUEST,
)
from reranker.dialect import Scoring, TokenBudget
from reranker.errors import InvalidRequest, ModeNotApplicable, RerankerError
from reranker.observability import logger
from reranker.schemas import FieldNames, Limits, RerankRequest, parse_rerank_request
from reranker.text import replace_lone_surrogates

type ApiVersion = Literal[1, 2]

# Fields each version defines (declared in contract.py). Anything else is ignored (and its name logged by the
# app), as newer SDKs add optional fields (v2 "priority") that must not break a drop-in endpoint.
V1_FIELDS = COHERE_V1_REQUEST.names
# Older v2 SDKs still send these; honouring them costs nothing.
V2_LEGACY_FIELDS = COHERE_V2_LEGACY_FIELDS
V2_FIELDS = tuple(name for name in COHERE_V2_REQUEST.names if name not in V2_LEGACY_FIELDS)
# What a Cohere caller calls the native fields, so the shared validation speaks Cohere's words.
COHERE_NAMES = FieldNames(passages="documents", top_k="top_n")


@dataclass(frozen=True)
class CohereRequest:
    """A Cohere rerank request: the native request it maps to and what only the Cohere answer needs."""

    version: ApiVersion
    native: RerankRequest
    documents: tuple[object, ...]  # as sent, for return_documents
    model: str | None = None
    return_documents: bool = False
    long_documents: LongDocuments | None = None  # v1 max_chunks_per_doc -> "window"
    max_chunks_per_doc: int | None = None
    max_tokens_per_doc: int | None = None
    ignored_fields: tuple[str, ...] = ()


def parse_cohere_request(payload: object, version: ApiVersion, limits: Limits) -> CohereRequest:
    """Validate a decoded v1 / v2 body; raise InvalidRequest (400) or PayloadTooLarge (413) in Cohere words."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    known = V1_FIELDS if version == 1 else V2_FIELDS + V2_LEGACY_FIELDS
    ignored = tuple(replace_lone_surrogates(str(key)[:40]) for key in payload if key not in known)  # logged
    present = {key: value for key, value in payload.items() if key in known and value is not None}

    declared = COHERE_V1_REQUEST if version == 1 else COHERE_V2_REQUEST
    model: str | None = declared["model"].read(present)
    declared["query"].require(present)
    declared["documents"].require(present)
    documents: list[object] = declared["documents"].check(present["documents"])
    named_fields: list[str] | None = declared["rank_fields"].read(present)
    rank_fields = None if named_fields is None else tuple(named_fields)
    return_documents: bool = declared["return_documents"].read(present)
    # Each version declares one of the two token budgets; the other is never present.
    max_chunks: int | None = COHERE_V1_REQUEST["max_chunks_per_doc"].read(present)
    max_tokens: int | None = COHERE_V2_REQUEST["max_tokens_per_doc"].read(present)

    texts = [_document_text(index, document, rank_fields) for index, document in enumerate(documents)]
    native_payload: dict[str, object] = {"query": present["query"], "passages": texts, "return_text": False}
    if "top_n" in present:
        native_payload["top_k"] = present["top_n"]
    native = parse_rerank_request(native_payload, limits, COHERE_NAMES)
    return CohereRequest(
        version=version,
        native=native,
        documents=tuple(documents),
        model=model,
        return_documents=return_documents,
        long_documents="window" if max_chunks is not None else None,
        max_chunks_per_doc=max_chunks,
        max_tokens_per_doc=max_tokens,
        ignored_fields=ignored,
    )


def _document_text(index: int, document: object, rank_fields: tuple[str, ...] | None) -> str:
    """What the model scores: the string itself; an object's text; or its rank_fields as 'key: value' lines."""
    if isinstance(document, str):
        return document
    if not isinstance(document, Mapping):
        raise InvalidRequest(f"documents[{index}] must be a string or an object")
    if rank_fields is None:
        text = document.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(
                f"documents[{index}] has no string 'text' field; send it or name fields with rank_fields"
            )
        return text
    lines = [f"{name}: {_field_text(document[name])}" for name in rank_fields if name in document]
    if not lines:
        raise InvalidRequest(f"documents[{index}] has none of the rank_fields")
    return "\n".join(lines)


def _field_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, default=str)


# --- token budgets: max_tokens_per_doc (v2) and max_chunks_per_doc (v1) ------------------------------------


def apply_token_budgets(
    request: CohereRequest, trimmer: TokenBudget | None, window_max_per_passage: int
) -> RerankRequest:
    """The native request with documents pre-truncated to the request's token budget, if it set one."""
    native = request.native
    if trimmer is None or not native.passages:
        return native
    budget: int | None = request.max_tokens_per_doc
    if request.max_chunks_per_doc is not None and request.max_chunks_per_doc < window_max_per_passage:
        chunk_budget = trimmer.window_budget(native.query, request.max_chunks_per_doc)
        budget = chunk_budget if budget is None else min(budget, chunk_budget)
    if budget is None:
        return native
    texts = trimmer.trim(native.scored_texts, budget)
    passages = tuple(
        passage if text == passage.scored_text else replace(passage, scored_text=text)
        for passage, text in zip(native.passages, texts, strict=True)
    )
    return replace(native, passages=passages)


# --- answers ------------------------------------------------------------------------------------------------


def search_units(documents: int) -> int:
    """Cohere bills one search unit per query of up to 100 documents."""
    return max(1, math.ceil(documents / 100))


def build_cohere_response(
    request: CohereRequest, native_response: Mapping[str, Any], response_id: str
) -> dict[str, Any]:
    """Cohere's answer from the native one (already ranked and cut to top_n).

    Passages the deadline left unscored come last with relevance_score 0.0 (every Cohere client requires a
    number) and a ``meta.warnings`` entry says how many.
    """
    results: list[dict[str, Any]] = []
    unscored = 0
    for item in native_response["results"]:
        score = item["score"]
        if score is None:
            unscored += 1
        result: dict[str, Any] = {"index": item["index"], "relevance_score": 0.0 if score is None else score}
        if request.return_documents:
            document = request.documents[item["index"]]
            result["document"] = {"text": document} if isinstance(document, str) else document
        results.append(result)
    meta: dict[str, Any] = {
        "api_version": {"version": str(request.version)},
        "billed_units": {"search_units": search_units(len(request.documents))},
    }
    if unscored:
        meta["warnings"] = [
            f"{unscored} documents were not scored before the deadline; they are returned last, in input "
            "order, with relevance_score 0"
        ]
    return {"id": response_id, "results": results, "meta": meta}


# --- the dialect ----------------------------------------------------------------------------------------------


class CohereDialect:
    """``POST /v1/rerank`` and ``POST /v2/rerank``: the same scoring, Cohere's request, answer and errors."""

    size_advice = 'send "return_documents": false (you have the documents) or ask for fewer results (top_n)'

    def __init__(self, version: ApiVersion) -> None:
        self.version: ApiVersion = version
        self.name = f"cohere-v{version}"

    def claims(self, payload: object) -> bool:
        return True

    def read(self, payload: object, scoring: Scoring) -> CohereRequest:
        return parse_cohere_request(payload, self.version, scoring.limits)

    def answer(self, payload: object, scoring: Scoring) -> dict[str, Any]:
        request = self.read(payload, scoring)
        if request.ignored_fields:
            logger.append_keys(ignored_fields=list(request.ignored_fields))
        needs_tokens = request.max_tokens_per_doc is not None or request.max_chunks_per_doc is not None
        budget = scoring.token_budget() if needs_tokens else None
        try:
            budgeted = apply_token_budgets(request, budget, scoring.window_max_per_passage)
        except ModeNotApplicable as exc:
            raise InvalidRequest(
                f"max_chunks_per_doc cannot be used with the model {exc.model}: {exc.reason}"
            ) from exc
        native = replace(budgeted, long_documents=request.long_documents)
        response = scoring.rank(native)
        scoring.tally.emit()
        logger.append_keys(model=scoring.model, top_k=native.top_k, cohere_model=request.model)
        request_id = scoring.request_id
        return build_cohere_response(
            request, response, str(uuid.uuid4()) if request_id is None else request_id
        )

    def error_body(self, error: RerankerError) -> tuple[int, dict[str, Any]]:
        return error.http_status, {"message": error.public_message}


COHERE_V1 = CohereDialect(1)
COHERE_V2 = CohereDialect(2)
