"""The service's API: every HTTP route with its operation and dialect, and what a direct invoke reaches."""

from __future__ import annotations

from reranker import runtime, service
from reranker.cohere import COHERE_V1, COHERE_V2
from reranker.native import NATIVE
from reranker.routes import Route, Router
from reranker.tei import TEI

ROUTER = Router(
    [
        Route("POST", "/rerank", service.rerank, NATIVE, alternatives=(TEI,)),
        Route("GET", "/health", service.health, reads_body=False),
        Route("POST", "/v1/rerank", service.rerank, COHERE_V1),
        Route("POST", "/v2/rerank", service.rerank, COHERE_V2),
        Route("GET", "/openapi.json", service.openapi_document, reads_body=False),
        # A Function URL has no API Gateway routes: its callers post to the root.
        Route("POST", "/", service.rerank, NATIVE, alternatives=(TEI,), callers=("function_url",)),
    ],
    authenticate=runtime.authenticate,
)
# Direct invokes (Step Functions) carry the native request itself, or a batch of them.
DIRECT = Route("INVOKE", "", service.rerank, NATIVE)
