"""The baseline for the cold-start benchmark: a Lambda handler built on the FlashRank library.

Same Powertools setup as ours (Logger with the Lambda context, Metrics with the cold-start metric, and the
Tracer when tracing is on), the model loaded at import from the same files, the answer made JSON-safe.
Configured by the environment: FLASHRANK_CACHE_DIR, MODEL_NAME, TRACING=1.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from flashrank import Ranker, RerankRequest

logger = Logger(service="reranker-flashrank")
metrics = Metrics(namespace="RerankerBaseline", service="reranker-flashrank")
ranker = Ranker(
    model_name=os.environ.get("MODEL_NAME", "ms-marco-TinyBERT-L-2-v2"),
    cache_dir=os.environ["FLASHRANK_CACHE_DIR"],
    log_level="WARNING",
)


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    passages = [{"id": index, "text": text} for index, text in enumerate(event["passages"])]
    ranked = ranker.rerank(RerankRequest(query=event["query"], passages=passages))
    metrics.add_metric(name="Passages", unit="Count", value=len(passages))
    logger.info("request done", extra={"passages": len(passages)})
    return {"results": [{"index": item["id"], "score": float(item["score"])} for item in ranked]}


if os.environ.get("TRACING") == "1":
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service="reranker-flashrank", auto_patch=False)
    handle = tracer.capture_lambda_handler(handle, capture_response=False)

lambda_handler = logger.inject_lambda_context(metrics.log_metrics(handle, capture_cold_start_metric=True))
