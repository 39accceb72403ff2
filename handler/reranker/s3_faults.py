"""What a failed S3 download means: a transient fault worth another GET, or a refusal with its own error."""

from __future__ import annotations

from typing import Any

from reranker.config import MODEL_S3_URI
from reranker.errors import ModelAccessDenied, ModelDownloadFailed, ModelObjectMissing, ModelUnavailable

# S3 error codes (botocore ClientError "Code", or the bare HTTP status for HEAD-style errors).
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
# Worth another GET: throttling and server errors, by HTTP status or S3 error code (botocore's standard-mode
# lists, for the codes S3 sends).
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        "BandwidthLimitExceeded",
    }
)


class TransientFault(Exception):
    """One attempt failed in a way another GET may not: throttling, 5xx, a cut or stalled connection."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = (
            kind  # what the retry log line and the final error name: "SlowDown 503", "ReadTimeoutError"
        )


def classify_download_error(exc: BaseException, uri: str) -> TransientFault | ModelUnavailable:
    """The meaning of an exception raised while one GET of ``uri`` ran: retry it, or fail with this error.

    Only SDK and network exceptions belong here; the caller keeps its own (disk, budget) apart.
    """
    from botocore import exceptions as sdk

    if isinstance(exc, sdk.ClientError):
        return _client_error(exc, uri)
    if isinstance(exc, sdk.NoCredentialsError):
        return ModelAccessDenied(
            f"no AWS credentials to read {uri}; give the function a role that allows s3:GetObject"
        )
    # Network faults, those while the body streams included (botocore never retries these); an OSError
    # here is a socket's, as the caller raises disk errors apart.
    if isinstance(
        exc, (sdk.HTTPClientError, sdk.ConnectionError, sdk.IncompleteReadError, sdk.ChecksumError, OSError)
    ):
        return TransientFault(type(exc).__name__)
    return ModelDownloadFailed(
        f"could not download {uri} ({type(exc).__name__}: {exc}); check the function's AWS configuration"
    )


def _client_error(exc: Any, uri: str) -> TransientFault | ModelUnavailable:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _RETRYABLE_CODES or status in _RETRYABLE_STATUSES:
        return TransientFault(f"{error.get('Code') or 'HTTP'} {status}")
    if code in _MISSING_CODES or status == 404:
        what = "bucket" if code == "NoSuchBucket" else "object"
        return ModelObjectMissing(
            f"{uri} does not exist (the {what} is missing: {code}); upload the model archive there "
            f"or fix {MODEL_S3_URI}"
        )
    if code in _DENIED_CODES or status == 403:
        return ModelAccessDenied(
            f"access to {uri} was denied ({code}); allow s3:GetObject on it in the function's role "
            "(and kms:Decrypt if the bucket uses a KMS key), and check the bucket policy"
        )
    return ModelDownloadFailed(
        f"could not download {uri}: S3 answered {code or status}, which is not retried; check the "
        "request S3 refused (bucket policy, KMS key, region)"
    )
