"""Download MODEL_S3_URI to a file: whole-GET retries with full-jitter backoff inside the load budget, sha256-checked."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from reranker.config import (
    MODEL_LOAD_BUDGET_SECONDS,
    MODEL_S3_MAX_ATTEMPTS,
    MODEL_S3_URI,
    MODEL_SHA256,
    Settings,
)
from reranker.errors import ModelChecksumMismatch, ModelDownloadFailed, ModelNotConfigured, UnsafeModelArchive
from reranker.observability import logger
from reranker.s3_faults import TransientFault, classify_download_error

# Full-jitter exponential backoff between whole-download attempts: uniform(0, min(cap, base * 2**n)).
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 2.0
# An attempt is only started with at least this much of the budget left (a GET of a small model on a
# healthy path takes ~20 ms; less than this would only produce a timeout).
MIN_ATTEMPT_SECONDS = 0.2
# The budget is checked after each chunk of the body, so a slow download stops within one chunk of it.
DOWNLOAD_CHUNK_BYTES = 64 * 1024
# SystemRandom: SnapStart restores every environment from one snapshot of the init, random's state included;
# os.urandom-backed jitter keeps restored copies from retrying in lockstep.
_jitter = random.SystemRandom()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise ModelNotConfigured(f"{MODEL_S3_URI} must look like s3://bucket/key.zip, got {uri!r}")
    return bucket, key


def create_s3_client(
    settings: Settings,
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    session: Any | None = None,
) -> Any:
    """An S3 client that makes exactly one HTTP request per call, with bounded timeouts.

    botocore's own retries are off: it cannot retry a body that breaks while streaming, and its backoff
    (up to 20 s) knows nothing of the init budget, so S3ArchiveDownload retries the whole download itself
    and every request it makes is one it counted. botocore directly, not boto3: boto3 adds s3transfer and
    ~30 ms of imports for nothing we use. Like boto3, it honours AWS_ENDPOINT_URL_S3, AWS_REGION and the
    Lambda role's credentials from the env.
    """
    import botocore.session
    from botocore.config import Config

    if connect_timeout is None:
        connect_timeout = settings.model_s3_connect_timeout_seconds
    if read_timeout is None:
        read_timeout = settings.model_s3_read_timeout_seconds
    config = Config(
        # total_max_attempts counts the first try; botocore's "max_attempts" key would count retries only.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return (session or botocore.session.get_session()).create_client("s3", config=config)


class LoadBudget:
    """The time the S3 source may take at init (MODEL_LOAD_BUDGET_SECONDS), counted from its creation."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()


class Downloaded(NamedTuple):
    bytes: int
    attempts: int  # GET requests made, the successful one included


class _BudgetSpent(Exception):
    """The budget ran out while the body was streaming."""


class _LocalWriteFailed(Exception):
    """Writing the archive failed (the local disk, not the network); carries the OSError to re-raise."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class S3ArchiveDownload:
    """One model archive (MODEL_S3_URI), fetched to a local file and checked against MODEL_SHA256.

    The load budget counts from this object's creation, so time spent waiting for the cache lock is
    spent from it too.
    """

    def __init__(self, settings: Settings, *, s3_client: Any | None = None) -> None:
        if settings.model_s3_uri is None or settings.model_sha256 is None:
            raise ModelNotConfigured(f"{MODEL_S3_URI} and {MODEL_SHA256} are both required for the S3 source")
        self._settings = settings
        self.uri = settings.model_s3_uri
        self._bucket, self._key = parse_s3_uri(settings.model_s3_uri)
        self.sha256 = settings.model_sha256.lower()
        self._client = s3_client  # for tests; without it botocore is imported only when a GET is due
        self.budget = LoadBudget(settings.model_load_budget_seconds)

    def download(self, archive: Path, check_room: Callable[[int], None]) -> Downloaded:
        """Write the archive to ``archive``: the whole GET retried with full-jitter backoff while the budget allows.

        ``check_room(object_bytes)`` runs once S3 has said how large the object is, before its body is read.
        Raises a ModelUnavailable for S3, network and checksum failures; an OSError, unchanged, when writing
        ``archive`` fails, so the caller can name its own disk.
        """
        budget = self.budget
        max_attempts = self._settings.model_s3_max_attempts
        session = None
        attempt = 0
        while True:
            attempt += 1
            connect_timeout, read_timeout = self._attempt_timeouts()
            client = self._client
            if client is None:
                import botocore.session

                # One session for every attempt: the second client reuses its loaded service model.
                session = session or botocore.session.get_session()
                client = create_s3_client(
                    self._settings,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    session=session,
                )
            try:
                size = self._download_once(client, archive, check_room)
            except TransientFault as fault:
                delay = _jitter.uniform(
                    0.0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                )
                if attempt >= max_attempts or budget.remaining() < delay + MIN_ATTEMPT_SECONDS:
                    raise self._gave_up(fault, attempt) from fault.__cause__
                logger.warning(
                    "model download attempt %d of %s failed (%s); retrying in %.2f s (%.2f s of the %s s "
                    "budget left)",
                    attempt, self.uri, fault.kind, delay, budget.remaining(), f"{budget.seconds:g}",
                    extra={"attempt": attempt, "fault": fault.kind},
                )  # fmt: skip
                time.sleep(delay)
                continue
            except _BudgetSpent as spent:
                raise ModelDownloadFailed(
                    f"the download of {self.uri} did not finish within {MODEL_LOAD_BUDGET_SECONDS}="
                    f"{budget.seconds:g} s ({attempt} attempt(s), {spent} bytes of the last one); check the "
                    "bandwidth to S3 (VPC endpoint or NAT), or use the model layer for a model this large"
                ) from None
            except _LocalWriteFailed as failed:
                raise failed.error from None
            if attempt > 1:
                logger.warning(
                    "model downloaded from %s after %d attempts in %.2f s",
                    self.uri, attempt, budget.elapsed(), extra={"attempts": attempt},
                )  # fmt: skip
            return Downloaded(size, attempt)

    def _attempt_timeouts(self) -> tuple[float, float]:
        """Connect and read timeouts for one attempt, together no longer than what the budget has left."""
        remaining = max(self.budget.remaining(), MIN_ATTEMPT_SECONDS)
        connect = min(self._settings.model_s3_connect_timeout_seconds, remaining / 2)
        read = min(self._settings.model_s3_read_timeout_seconds, remaining - connect)
        return connect, read

    def _gave_up(self, fault: TransientFault, attempts: int) -> ModelDownloadFailed:
        limit = (
            f"{MODEL_S3_MAX_ATTEMPTS}={self._settings.model_s3_max_attempts}"
            if attempts >= self._settings.model_s3_max_attempts
            else f"{MODEL_LOAD_BUDGET_SECONDS}={self.budget.seconds:g}"
        )
        return ModelDownloadFailed(
            f"could not download {self.uri}: {attempts} attempt(s) in {self.budget.elapsed():.1f} s all "
            f"failed (last: {fault.kind}); {limit} allows no more. Check S3 and the network path to it (VPC "
            "endpoint or NAT); a later request retries"
        )

    def _download_once(self, client: Any, archive: Path, check_room: Callable[[int], None]) -> int:
        """One GET streamed to ``archive`` (rewritten from the start), verified against MODEL_SHA256."""
        from botocore import exceptions as sdk

        digest = hashlib.sha256()
        size = 0
        body: Any = None
        try:
            response = client.get_object(Bucket=self._bucket, Key=self._key)
            body = response["Body"]
            object_bytes = int(response.get("ContentLength") or 0)
            self._check_object_size(object_bytes)
            check_room(object_bytes)
            with _open_for_write(archive) as sink:
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                    digest.update(chunk)
                    _write(sink, chunk)
                    size += len(chunk)
                    if self.budget.remaining() <= 0:
                        raise _BudgetSpent(size)
        except (sdk.ClientError, sdk.BotoCoreError, OSError) as exc:
            raise classify_download_error(exc, self.uri) from exc
        finally:
            if body is not None:
                body.close()
        actual = digest.hexdigest()
        if actual != self.sha256:
            raise ModelChecksumMismatch(
                f"{self.uri} has sha256 {actual} ({size} bytes), but {MODEL_SHA256} is {self.sha256}; "
                f"upload the right archive or set {MODEL_SHA256} to the archive's checksum"
            )
        return size

    def _check_object_size(self, object_bytes: int) -> None:
        limit = self._settings.model_archive_max_bytes
        if object_bytes > limit:
            raise UnsafeModelArchive(
                f"{self.uri} is {object_bytes} bytes, more than the limit of {limit} "
                "(MODEL_ARCHIVE_MAX_BYTES); refusing to download it"
            )


@contextmanager
def _open_for_write(path: Path) -> Iterator[BinaryIO]:
    try:
        sink = path.open("wb")
    except OSError as exc:
        raise _LocalWriteFailed(exc) from exc
    try:
        yield sink
    finally:
        try:
            sink.close()
        except OSError as exc:  # a delayed ENOSPC can surface on close
            raise _LocalWriteFailed(exc) from exc


def _write(sink: BinaryIO, chunk: bytes) -> None:
    try:
        sink.write(chunk)
    except OSError as exc:
        raise _LocalWriteFailed(exc) from exc
