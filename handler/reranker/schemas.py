"""The native rerank contract: request parsing with limits, and the ranked response."""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reranker.config import LongDocuments, Settings
from reranker.contract import PASSAGE_OBJECT, RERANK_REQUEST
from reranker.errors import InvalidRequest, PayloadTooLarge
from reranker.fields import Field, json_type, quote_key

type JsonScalar = str | int | float | bool | None

# Every field the native request may carry (declared in contract.py); anything else is rejected so that a typo
# ("top_n", "documents", "metadata") fails loudly instead of being ignored.
REQUEST_FIELDS = RERANK_REQUEST.names
PASSAGE_FIELDS = PASSAGE_OBJECT.names
_PASSAGE_TEXT = PASSAGE_OBJECT["text"]  # looked up once: read for every object passage
_PASSAGE_ID = PASSAGE_OBJECT["id"]


@dataclass(frozen=True)
class FieldNames:
    """What a wire format calls the native fields its requests map to, so validation speaks its words."""

    passages: str = "passages"
    top_k: str = "top_k"


NATIVE_NAMES = FieldNames()

# Lambda's synchronous payload limit (request and response, Function URLs too).
LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The request limits of one deployment (from config.Settings)."""

    max_passages: int = Settings.max_passages
    max_passage_chars: int = Settings.max_passage_chars
    max_query_chars: int = Settings.max_query_chars
    max_total_chars: int = Settings.max_total_chars

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_passages=settings.max_passages,
            max_passage_chars=settings.max_passage_chars,
            max_query_chars=settings.max_query_chars,
            max_total_chars=settings.max_total_chars,
        )


@dataclass(frozen=True)
class Passage:
    """One passage as the caller sent it; ``scored_text`` is what the model sees (maybe pre-truncated)."""

    index: int
    id: JsonScalar
    text: str
    scored_text: str
    meta: Any = None
    has_meta: bool = False

    @property
    def pre_truncated(self) -> bool:
        return len(self.scored_text) < len(self.text)


@dataclass(frozen=True)
class RerankRequest:
    query: str
    passages: tuple[Passage, ...]
    top_k: int | None = None
    return_text: bool = True
    min_score: float | None = None  # scored passages below it are dropped (before the top_k cut)
    correlation_id: str | None = None
    long_documents: LongDocuments | None = None  # None: the deployment's LONG_DOCUMENTS

    @property
    def pre_truncated(self) -> int:
        return sum(1 for passage in self.passages if passage.pre_truncated)

    @property
    def scored_texts(self) -> list[str]:
        return [passage.scored_text for passage in self.passages]


def decode_json(raw: str | bytes) -> object:
    """Parse a JSON document; any failure is an InvalidRequest that says where, never what.

    Numbers JSON allows but Python cannot hold faithfully (integers over the int/str digit limit, floats that
    overflow to infinity) and the NaN / Infinity literals are refused with the path of the field that holds them.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"request body is not valid UTF-8 (byte {exc.start})") from exc
    unrepresentable: list[UnrepresentableNumber] = []

    def parse_int(literal: str) -> object:
        try:
            return int(literal)
        except ValueError:
            unrepresentable.append(UnrepresentableNumber(f"an integer of {len(literal.lstrip('-'))} digits"))
            return unrepresentable[-1]

    def parse_float(literal: str) -> object:
        value = float(literal)
        if math.isinf(value):
            unrepresentable.append(UnrepresentableNumber(f"a number beyond the float range ({literal[:20]})"))
            return unrepresentable[-1]
        return value

    def parse_constant(name: str) -> object:
        unrepresentable.append(UnrepresentableNumber(f"{name}, which is not a JSON number"))
        return unrepresentable[-1]

    try:
        document = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply") from exc
    if unrepresentable:
        ensure_representable_numbers(document)
    return document


@dataclass(frozen=True, eq=False)
class UnrepresentableNumber:
    """Stands in for a number decode_json cannot keep; ensure_representable_numbers reports where it is."""

    description: str


def ensure_representable_numbers(document: object) -> None:
    """Raise InvalidRequest naming the first number the answer could not carry as strict JSON.

    That is NaN, an infinity (a direct invoke's event is parsed by the runtime, which accepts ``NaN`` and reads
    ``1e309`` as infinity), an integer over Python's int/str digit limit, or a decode_json stand-in for one.
    """
    if not _may_hold_unrepresentable(document):
        return
    found = _first_unrepresentable(document)
    if found is not None:
        path, description = found
        raise InvalidRequest(
            f"{path or 'the request'} is {description}; numbers must be finite floats "
            f"and integers of at most {_int_digit_limit() or 'any number of'} digits"
        )


def _may_hold_unrepresentable(document: object) -> bool:
    """A quick pass that keeps no paths: false when every number in the document is representable."""
    digit_limit = _int_digit_limit()
    long_int_bits = 3 * digit_limit if digit_limit else None  # 2 ** (3 * limit) < 10 ** limit
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str) or value is None:
            continue
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, float):
            if value - value != 0.0:  # NaN or an infinity
                return True
        elif isinstance(value, int):
            if long_int_bits is not None and value.bit_length() > long_int_bits:
                return True
        else:
            return True  # anything else (a tuple, a stand-in): the thorough pass decides
    return False


def _first_unrepresentable(document: object) -> tuple[str, str] | None:
    stack: list[tuple[str, object]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str | bool) or value is None:
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                if math.isnan(value):
                    return path, "NaN, which is not a JSON number"
                return path, "a number beyond the float range"
        elif isinstance(value, int):
            if _int_too_long(value):
                return path, f"an integer of more than {_int_digit_limit()} digits"
        elif isinstance(value, UnrepresentableNumber):
            return path, value.description
        elif isinstance(value, Mapping):
            stack.extend((_key_path(path, key), child) for key, child in list(value.items())[::-1])
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{index}]", value[index]) for index in range(len(value) - 1, -1, -1))
    return None


def _int_digit_limit() -> int:
    return int(sys.get_int_max_str_digits())


def _int_too_long(value: int) -> bool:
    """Whether str(value) would raise (Python refuses int/str conversions over the digit limit)."""
    limit = _int_digit_limit()
    # 2 ** (3 * limit) < 10 ** limit: anything that short has at most ``limit`` digits.
    return limit > 0 and value.bit_length() > 3 * limit and abs(value) >= _power_of_ten(limit)


@functools.cache
def _power_of_ten(digits: int) -> int:
    return int(10**digits)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,39}$")


def _key_path(path: str, key: object) -> str:
    shown = str(key)
    if _PLAIN_KEY.match(shown):
        return f"{path}.{shown}" if path else shown
    return f"{path}[{quote_key(key)}]"


def parse_rerank_request(payload: object, limits: Limits, names: FieldNames = NATIVE_NAMES) -> RerankRequest:
    """Validate a decoded native request; raise InvalidRequest (400) or PayloadTooLarge (413).

    ``names``: what the caller's wire format calls passages and top_k, for the messages.
    """
    if not isinstance(payload, Mapping):
        raise InvalidRequest(f"request must be a JSON object, got {json_type(payload)}")
    unknown = [key for key in payload if key not in REQUEST_FIELDS]
    if unknown:
        raise InvalidRequest(
            f"unknown field {quote_key(unknown[0])}; allowed fields: {', '.join(REQUEST_FIELDS)}"
        )
    declared = RERANK_REQUEST
    query: str = declared["query"].read(payload)
    declared["query"].ensure_not_blank(query)
    declared["query"].ensure_within_limit(query, limits)
    top_k: int | None = _read_as(declared["top_k"], payload, names.top_k)
    min_score = parse_min_score(payload.get("min_score"))
    return_text: bool = declared["return_text"].read(payload)
    long_documents: LongDocuments | None = declared["long_documents"].read(payload)
    correlation_id: str | None = declared["correlation_id"].read(payload)
    declared["passages"].require(payload)
    passages = _parse_passages(payload["passages"], query, limits, names.passages)
    return RerankRequest(
        query=query,
        passages=passages,
        top_k=top_k,
        return_text=return_text,
        min_score=min_score,
        correlation_id=correlation_id,
        long_documents=long_documents,
    )


def parse_min_score(value: object) -> float | None:
    """``min_score``: a number from 0 to 1 (scores are probabilities), or None when absent."""
    if value is None:
        return None
    return float(RERANK_REQUEST["min_score"].check(value))


def _read_as(declared: Field, payload: Mapping[str, object], name: str) -> Any:
    """``declared.read(payload)``, a complaint about the value worded with ``name`` (the caller's word)."""
    value = payload.get(declared.name)
    return declared.read(payload) if value is None else declared.check(value, name)


def _parse_passages(raw: object, query: str, limits: Limits, name: str) -> tuple[Passage, ...]:
    declared = RERANK_REQUEST["passages"]
    entries: list[object] = declared.check(raw, name)
    declared.ensure_within_limit(entries, limits, name)
    total_chars = len(query)
    parsed: list[Passage] = []
    for index, entry in enumerate(entries):
        passage = _parse_passage(f"{name}[{index}]", index, entry, limits.max_passage_chars)
        total_chars += len(passage.text)
        if total_chars > limits.max_total_chars:
            raise PayloadTooLarge(
                f"query and {name} exceed {limits.max_total_chars} characters in total "
                f"(reached at {name}[{index}])"
            )
        parsed.append(passage)
    return tuple(parsed)


def _parse_passage(where: str, index: int, entry: object, max_chars: int) -> Passage:
    if isinstance(entry, str):
        return Passage(index=index, id=index, text=entry, scored_text=entry[:max_chars])
    if not isinstance(entry, Mapping):
        raise InvalidRequest(f"{where} must be a string or an object with text, got {json_type(entry)}")
    unknown = [key for key in entry if key not in PASSAGE_FIELDS]
    if unknown:
        raise InvalidRequest(
            f"{where} has unknown field {quote_key(unknown[0])}; allowed fields: "
            f"{', '.join(PASSAGE_FIELDS)} (put anything else in meta)"
        )
    _PASSAGE_TEXT.require(entry, where)
    text: str = _PASSAGE_TEXT.read(entry, where)
    passage_id: JsonScalar = _PASSAGE_ID.read(entry, where)
    if passage_id is None:
        passage_id = index
    elif isinstance(passage_id, float) and not math.isfinite(passage_id):
        raise InvalidRequest(f"{where}.id must be a finite number")
    return Passage(
        index=index,
        id=passage_id,
        text=text,
        scored_text=text[:max_chars],
        meta=entry.get("meta"),
        has_meta="meta" in entry,
    )


def build_rerank_response(
    request: RerankRequest,
    scores: Sequence[float | None],
    *,
    model: str,
    tokens: int,
    truncated: int,
    windows: int | None = None,
    cached: int | None = None,
) -> dict[str, Any]:
    """Rank scored passages (ties keep input order), drop those below min_score, cut to top_k, append
    unscored ones unranked.

    ``scores`` is in the caller's order; ``None`` marks a passage the deadline left unscored (never dropped
    by min_score: it has no score to compare). ``usage`` counts the model runs (``windows``: one per
    passage, more in window mode), the cache hits when given, and ``filtered`` (the passages min_score
    dropped) when the request set min_score.
    """
    if len(scores) != len(request.passages):
        raise ValueError(f"got {len(scores)} scores for {len(request.passages)} passages")
    scored = [
        (float(score), passage)
        for score, passage in zip(scores, request.passages, strict=True)
        if score is not None
    ]
    scored.sort(key=lambda pair: -pair[0])  # stable: ties keep input order
    filtered = 0
    if request.min_score is not None:
        kept = [pair for pair in scored if pair[0] >= request.min_score]
        filtered = len(scored) - len(kept)
        scored = kept
    unscored = [passage for score, passage in zip(scores, request.passages, strict=True) if score is None]
    limit = len(request.passages) if request.top_k is None else request.top_k
    results = [_result(passage, score, request.return_text) for score, passage in scored[:limit]]
    for passage in unscored[: max(0, limit - len(results))]:
        result = _result(passage, None, request.return_text)
        result["reranked"] = False
        results.append(result)
    usage: dict[str, int] = {"passages": len(request.passages), "tokens": tokens, "truncated": truncated}
    if windows is not None:
        usage["windows"] = windows
    if cached is not None:
        usage["cached"] = cached
    if request.min_score is not None:
        usage["filtered"] = filtered
    return {"model": model, "results": results, "usage": usage}


def _result(passage: Passage, score: float | None, return_text: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"index": passage.index, "id": passage.id, "score": score}
    if return_text:
        result["text"] = passage.text
    if passage.has_meta:
        result["meta"] = passage.meta
    return result
