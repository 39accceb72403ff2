"""The service's error types as exceptions of the same names, and how an error answer becomes one."""

from __future__ import annotations


class RerankerError(Exception):
    """Base of every error the client raises; ``error_type`` is the service's (or AWS's) name for it."""

    retryable = False

    def __init__(self, message: str, *, error_type: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.status = status  # the HTTP status, when the answer came over HTTP


class InvalidRequest(RerankerError):
    """400: the request is malformed; do not retry."""


class Unauthorized(RerankerError):
    """401: bearer mode, missing or wrong token."""


class RouteNotFound(RerankerError):
    """404: unknown path (check the URL)."""


class MethodNotAllowed(RerankerError):
    """405: wrong method."""


class PayloadTooLarge(RerankerError):
    """413: too many passages, query or total text too long, or an answer over Lambda's limits; do not retry."""


class UnsupportedMediaType(RerankerError):
    """415: the body was not sent as JSON."""


class InternalError(RerankerError):
    """500: a fault of the service (its logs say why)."""


class ModelUnavailable(RerankerError):
    """503: the model could not be loaded; retried with backoff."""

    retryable = True


class DeadlineExceeded(RerankerError):
    """504: time ran out before every passage was scored; retried with backoff."""

    retryable = True


class Throttled(RerankerError):
    """429 / Lambda TooManyRequestsException: over the concurrency or rate limit; retried with backoff."""

    retryable = True


class AccessDenied(RerankerError):
    """403 from AWS: missing permission, bad or expired credentials, or a signature AWS refused."""


class TransportError(RerankerError):
    """The request did not get an answer: connection refused or reset, or a connect / read timeout."""


class ServiceError(RerankerError):
    """Any other failure AWS reported (``error_type`` keeps its name: e.g. a Lambda runtime error)."""


ERROR_TYPES: dict[str, type[RerankerError]] = {
    cls.__name__: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        RouteNotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        InternalError,
        ModelUnavailable,
        DeadlineExceeded,
    )
}
# What AWS itself answers in front of the function (API Gateway, Function URLs, the Lambda Invoke API).
_AWS_ERROR_TYPES: dict[str, type[RerankerError]] = {
    "TooManyRequestsException": Throttled,
    "ThrottlingException": Throttled,
    "AccessDeniedException": AccessDenied,
    "InvalidSignatureException": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "ExpiredTokenException": AccessDenied,
}


def error_from_answer(error_type: str | None, message: str, status: int | None = None) -> RerankerError:
    """The exception for an error named by the service (``error.type``, Lambda ``errorType``) or by AWS
    (``x-amzn-ErrorType``, a botocore error code); without a known name, the HTTP status decides."""
    cls = ERROR_TYPES.get(error_type or "") or _AWS_ERROR_TYPES.get(error_type or "")
    if cls is None:
        if status == 429:
            cls = Throttled
        elif status == 403:
            cls = AccessDenied
        else:
            cls = ServiceError
    return cls(message, error_type=error_type or (f"HTTP{status}" if status else None), status=status)
