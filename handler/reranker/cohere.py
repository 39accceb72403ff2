"""Cohere's rerank wire format (v1 and v2) <-> native requests and responses, so switching is a base URL change."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from reranker.contract import (
    COHERE_V1_REQUEST,
    COHERE_V2_LEGACY_FIELDS,
    COHERE_V2_REQUEST,
)
from reranker.engine import CrossEncoder, LongDocuments
from reranker.errors import InvalidRequest, RerankerError
from reranker.schemas import Limits, RerankRequest, parse_rerank_request
from reranker.text import replace_lone_surrogates
from reranker.tokenization import PairTokenizer, tokenizer_text

type ApiVersion = Literal[1, 2]

# Fields each version defines (declared in contract.py). Anything else is ignored (and its name logged by the
# app), as newer SDKs add optional fields (v2 "priority") that must not break a drop-in endpoint.
V1_FIELDS = COHERE_V1_REQUEST.names
# Older v2 SDKs still send these; honouring them costs nothing.
V2_LEGACY_FIELDS = COHERE_V2_LEGACY_FIELDS
V2_FIELDS = tuple(name for name in COHERE_V2_REQUEST.names if name not in V2_LEGACY_FIELDS)
# Native wording in the shared validation messages, and what a Cohere caller calls the same thing.
_COHERE_WORDS = (("passages", "documents"), ("top_k", "top_n"), ("return_text", "return_documents"))


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
    try:
        native = parse_rerank_request(native_payload, limits)
    except RerankerError as exc:
        raise type(exc)(_in_cohere_words(exc.public_message)) from exc
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


def _in_cohere_words(message: str) -> str:
    for native, cohere in _COHERE_WORDS:
        message = message.replace(native, cohere)
    return message


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


class DocumentTrimmer:
    """Cuts a document at a word boundary so it holds at most N model tokens.

    v2 ``max_tokens_per_doc`` is that cut. v1 ``max_chunks_per_doc`` is the cut that leaves exactly as many
    tokens as that many overlapping windows cover (the engine's own window geometry: the query and the
    tokenizer's pair-template special tokens beside each window, ``window_overlap_tokens`` shared).
    """

    def __init__(self, pairs: PairTokenizer) -> None:
        self._pairs = pairs
        # The tokenizer itself, not the fast path's twin: offsets must cut the raw text.
        self._tokenizer = pairs.passage_batches().tokenizer
        self.max_length = pairs.max_length

    @classmethod
    def from_engine(cls, engine: CrossEncoder) -> DocumentTrimmer:
        """The engine's own untruncated tokenizer and window settings: no second load of tokenizer.json."""
        return cls(engine.tokenization)

    def window_budget(self, query: str, chunks: int) -> int:
        """How many passage tokens ``chunks`` windows cover beside this query (the engine's geometry).

        Raises WindowsUnsupported when the model cannot be scored in windows.
        """
        _, _, room, step = self._pairs.window_room(query)
        return room + (chunks - 1) * step

    def trim(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut to at most ``max_tokens`` tokens; texts that surely fit are not even tokenized."""
        trimmed = list(texts)
        # A token covers at least one character, so a text of at most max_tokens characters fits.
        long_indices = [index for index, text in enumerate(texts) if len(text) > max_tokens]
        if not long_indices:
            return trimmed
        # Same length as the caller's text (one U+FFFD per surrogate), so offsets cut the original.
        encodings = self._tokenizer.encode_batch(
            [tokenizer_text(texts[index]) for index in long_indices], add_special_tokens=False
        )
        for index, encoding in zip(long_indices, encodings, strict=True):
            if len(encoding.ids) <= max_tokens:
                continue
            cut = max_tokens  # the first token that does not fit; back off to its word's first token
            word_ids = encoding.word_ids
            while cut > 0 and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            if cut == 0:  # one word longer than the budget: cut inside it
                cut = max_tokens
            trimmed[index] = texts[index][: encoding.offsets[cut][0]].rstrip()
        return trimmed


def apply_token_budgets(
    request: CohereRequest, trimmer: DocumentTrimmer | None, window_max_per_passage: int
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
