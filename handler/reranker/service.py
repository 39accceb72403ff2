"""The operations callers reach: rerank in any dialect, health and the OpenAPI document."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reranker import fanout
from reranker.calls import Call
from reranker.dialect import AnyDialect
from reranker.observability import RerankTally
from reranker.runtime import ready
from reranker.scoring import CallScoring

VERSION = "0.1.0"
# The OpenAPI description of every HTTP route, shipped in the package and read on the first GET /openapi.json.
OPENAPI_DOCUMENT = Path(__file__).with_name("openapi.json")


def rerank(dialect: AnyDialect, payload: object, call: Call) -> object:
    """Read the body in the caller's dialect, score it with the loaded model, answer in that dialect."""
    scorer = ready().scorer
    splitter = None
    if call.shape == "direct" and isinstance(payload, Mapping) and payload.get(fanout.SHARD_MARKER) is True:
        # A shard of a fanned-out request: scored here, never split again (on HTTP the field is refused).
        payload = {key: value for key, value in payload.items() if key != fanout.SHARD_MARKER}
    elif scorer.settings.fanout_max_workers > 0:  # off by default: the request path never enters fanout
        splitter = fanout.for_call(scorer.settings, call.context, scorer.clock)
    scoring = CallScoring(scorer, call.context, RerankTally(cache_enabled=scorer.cache_enabled), splitter)
    return dialect.answer(payload, scoring)


def health(dialect: AnyDialect, payload: object, call: Call) -> dict[str, Any]:
    runtime = ready()
    settings, engine, location, cache = (
        runtime.settings,
        runtime.engine,
        runtime.location,
        runtime.scorer.cache,
    )
    return {
        "status": "ok",
        "version": VERSION,
        "function_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "model": {
            "name": engine.name,
            "sha256": engine.sha256,
            "quantized": engine.quantized,
            "fixture": engine.fixture,
            "source": location.source,
            "archive_sha256": location.archive_sha256,
            "load_seconds": round(runtime.load_seconds, 4),
        },
        "engine": engine.describe(),
        "limits": {
            "max_passages": settings.max_passages,
            "max_passage_chars": settings.max_passage_chars,
            "max_query_chars": settings.max_query_chars,
            "max_total_chars": settings.max_total_chars,
        },
        "deadline": {"policy": settings.deadline_policy, "margin_ms": settings.deadline_margin_ms},
        "long_documents": settings.long_documents,
        "max_batch_requests": settings.max_batch_requests,
        "auth": settings.auth_mode,
        "score_cache": {
            "enabled": cache.enabled,
            "capacity": cache.capacity,
            "entries": len(cache),
            "hits": cache.hits,
            "misses": cache.misses,
            "evictions": cache.evictions,
        },
    }


_openapi_cache: dict[str, Any] = {}


def openapi_document(dialect: AnyDialect, payload: object, call: Call) -> dict[str, Any]:
    """GET /openapi.json: read once per environment on first use, so cold starts never pay for it."""
    if not _openapi_cache:
        document = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise TypeError(f"{OPENAPI_DOCUMENT.name} must hold a JSON object")
        _openapi_cache.update(document)
    return _openapi_cache
