"""Every failure the service reports: one base class with a public message, one subclass per kind.

The class name is the stable error type: HTTP callers see it in ``{"error": {"type": ...}}`` and direct
invokers (Step Functions) see it as the Lambda ``errorType`` they match in ``ErrorEquals``.
"""

from __future__ import annotations


class RerankerError(Exception):
    """Base of every error we raise on purpose; ``public_message`` is safe to show a caller."""

    http_status = 500

    def __init__(self, public_message: str) -> None:
        super().__init__(public_message)
        self.public_message = public_message

    @property
    def error_type(self) -> str:
        return type(self).__name__


# --- the caller's fault (4xx) -------------------------------------------------------------------


class InvalidRequest(RerankerError):
    """Malformed JSON, wrong types, missing or empty fields, bad top_k."""

    http_status = 400


class Unauthorized(RerankerError):
    """Missing or wrong bearer token."""

    http_status = 401


class RouteNotFound(RerankerError):
    http_status = 404


class MethodNotAllowed(RerankerError):
    http_status = 405

    def __init__(self, public_message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(public_message)
        self.allowed = allowed


class PayloadTooLarge(RerankerError):
    """Too many passages or too much text for the configured limits."""

    http_status = 413


class UnsupportedMediaType(RerankerError):
    http_status = 415


# --- the model (init-time, 5xx) ------------------------------------------------------------------


class ModelUnavailable(RerankerError):
    """The model could not be found, fetched, verified or loaded."""

    http_status = 503


class ModelNotConfigured(ModelUnavailable):
    """No model source is configured, or the configured one does not exist."""


class ModelFileInvalid(ModelUnavailable):
    """A file of the model directory is missing or malformed; the message names the file."""


class ModelObjectMissing(ModelUnavailable):
    """The S3 object (or bucket) of MODEL_S3_URI does not exist."""


class ModelAccessDenied(ModelUnavailable):
    """The function's role may not read the S3 object."""


class ModelChecksumMismatch(ModelUnavailable):
    """The downloaded archive's sha256 is not MODEL_SHA256."""


class UnsafeModelArchive(ModelUnavailable):
    """The archive has absolute paths, '..', links, too many files or too many bytes."""


class ModelCacheNoSpace(ModelUnavailable):
    """Not enough free space under the cache root (/tmp) for the model."""


class ModelDownloadFailed(ModelUnavailable):
    """S3 kept failing (throttling, 5xx, network, a cut or stalled body) on every attempt that fitted in
    MODEL_LOAD_BUDGET_SECONDS, the download outlasted that budget, or S3 refused it in a way not retried
    (other than 403/404); a later request retries after MODEL_LOAD_RETRY_SECONDS."""


# --- serving (5xx) -------------------------------------------------------------------------------


class DeadlineExceeded(RerankerError):
    """The invocation ran out of time before every passage was scored (DEADLINE_POLICY=error)."""

    http_status = 504


class InternalError(RerankerError):
    """A fault of ours; details go to the logs, never to the caller."""

    http_status = 500


# --- mapping: what a caller may see -------------------------------------------------------------------

# The error types callers may see (HTTP "type", Lambda errorType for Step Functions ErrorEquals).
# Finer internal subclasses (ModelChecksumMismatch, SettingsError, ...) are reported as their public base.
PUBLIC_ERRORS: tuple[type[RerankerError], ...] = (
    InvalidRequest,
    Unauthorized,
    RouteNotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    ModelUnavailable,
    DeadlineExceeded,
    InternalError,
)
GENERIC_INTERNAL_MESSAGE = "internal error; the function's logs have the details"


class ModeNotApplicable(InvalidRequest):
    """A long-document option this model cannot apply: the caller's choice (400), not an outage (503).

    ``option`` names the option as the caller wrote it; a wire format may word it its own way from
    ``model`` and ``reason``.
    """

    def __init__(self, option: str, model: str, reason: str) -> None:
        super().__init__(f"{option} cannot be used with the model {model}: {reason}")
        self.model = model
        self.reason = reason


def public_error(exc: BaseException) -> RerankerError:
    """The error a caller may see: a documented type with a safe message, never a stack trace or path."""
    if type(exc) in PUBLIC_ERRORS:
        assert isinstance(exc, RerankerError)
        return exc
    if isinstance(exc, RerankerError):
        for cls in type(exc).__mro__:
            if cls in PUBLIC_ERRORS:
                return cls(exc.public_message)
    return InternalError(GENERIC_INTERNAL_MESSAGE)
