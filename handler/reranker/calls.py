"""What an operation knows of its invocation (transport-neutral), and how a failure is reported once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reranker import observability as obs
from reranker.errors import RerankerError, public_error
from reranker.observability import logger

type CallerShape = Literal["http_api", "function_url", "rest_api", "direct"]


@dataclass(frozen=True)
class Call:
    """What an operation may need to know about its invocation besides the parsed payload."""

    shape: CallerShape
    context: Any  # the Lambda context: get_remaining_time_in_millis(), aws_request_id
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased; empty for direct invokes
    correlation_id: str | None = None


def report_error(exc: Exception) -> RerankerError:
    """Log and count an error once; return what the caller may see."""
    error = public_error(exc)
    client_error = error.http_status < 500
    if client_error:
        logger.warning(
            "request rejected", extra={"error_type": error.error_type, "error": error.public_message}
        )
    elif isinstance(exc, RerankerError):
        logger.error("request failed", extra={"error_type": error.error_type, "error": error.public_message})
    else:
        logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
    obs.count_error(error.error_type, client_error=client_error)
    return error
