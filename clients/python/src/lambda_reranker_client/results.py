"""What a rerank call returns: typed results and usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lambda_reranker_client.errors import ServiceError


@dataclass(frozen=True)
class RerankResult:
    """One passage of the answer: its position in the request, its id, score in [0, 1], meta and text."""

    index: int
    id: Any
    score: float
    meta: dict[str, Any] | None = None
    text: str | None = None


@dataclass(frozen=True)
class Usage:
    """What the call cost; ``filtered`` counts passages dropped by ``min_score``; ``raw`` keeps every field."""

    passages: int = 0
    tokens: int = 0
    truncated: int = 0
    windows: int = 0
    cached: int = 0
    filtered: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankResponse:
    """Results sorted by score (best first), at most ``top_k`` of them."""

    model: str
    results: list[RerankResult]
    usage: Usage


def parse_response(body: object) -> RerankResponse:
    """The native answer ``{"model", "results", "usage"}`` as dataclasses; anything else is a ServiceError."""
    try:
        if not isinstance(body, Mapping):
            raise TypeError("not an object")
        results = [
            RerankResult(
                index=int(item["index"]),
                id=item.get("id", item["index"]),
                score=float(item["score"]),
                meta=item.get("meta"),
                text=item.get("text"),
            )
            for item in body["results"]
        ]
        raw_usage = dict(body.get("usage") or {})
        counts = {
            name: int(raw_usage.get(name, 0))
            for name in ("passages", "tokens", "truncated", "windows", "cached", "filtered")
        }
        return RerankResponse(
            model=str(body.get("model", "")), results=results, usage=Usage(**counts, raw=raw_usage)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceError(f"unexpected answer from the reranker: {exc}", error_type="BadResponse") from exc
