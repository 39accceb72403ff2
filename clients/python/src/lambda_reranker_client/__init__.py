"""Client for the lambda-reranker service (IAM / SigV4), with optional LangChain, LlamaIndex and Haystack rerankers."""

from __future__ import annotations

from lambda_reranker_client.client import RerankerClient, RetryPolicy, __version__
from lambda_reranker_client.errors import (
    AccessDenied,
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelUnavailable,
    PayloadTooLarge,
    RerankerError,
    RouteNotFound,
    ServiceError,
    Throttled,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
)
from lambda_reranker_client.results import RerankResponse, RerankResult, Usage

__all__ = [
    "AccessDenied",
    "DeadlineExceeded",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelUnavailable",
    "PayloadTooLarge",
    "RerankResponse",
    "RerankResult",
    "RerankerClient",
    "RerankerError",
    "RetryPolicy",
    "RouteNotFound",
    "ServiceError",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "Usage",
    "__version__",
]
