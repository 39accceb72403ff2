"""Find the model directory at init: MODEL_DIR, then the model layer, then S3 into a verified /tmp cache."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from reranker.archive import ExtractedArchive, extract_zip, sha256_file
from reranker.config import (
    MODEL_CACHE_DIR,
    MODEL_DIR,
    MODEL_LAYER_ROOT,
    MODEL_LOAD_BUDGET_SECONDS,
    MODEL_NAME,
    MODEL_S3_MAX_ATTEMPTS,
    MODEL_S3_URI,
    MODEL_SHA256,
    Settings,
)
from reranker.errors import (
    ModelAccessDenied,
    ModelCacheNoSpace,
    ModelChecksumMismatch,
    ModelDownloadFailed,
    ModelNotConfigured,
    ModelObjectMissing,
    ModelUnavailable,
    UnsafeModelArchive,
)

logger = logging.getLogger(__name__)

Source = Literal["model_dir", "layer", "s3", "cache"]

ARCHIVE_SHA256_FILE = ".archive-sha256"  # written by the layer build next to the model files
MANIFEST_FILE = "manifest.json"  # written last inside a cache entry, before the entry is published
MANIFEST_FORMAT = 1
LOCK_FILE = ".lock"
_TEMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"

# S3 error codes (botocore ClientError "Code", or the bare HTTP status for HEAD-style errors).
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
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


@dataclass(frozen=True)
class ModelLocation:
    directory: Path  # the FlashRank model directory to hand to the engine
    source: Source  # "cache": the S3 source, satisfied by the /tmp cache without an S3 call
    archive_sha256: str | None
    seconds: float  # time spent locating / fetching
    bytes_downloaded: int = 0
    download_attempts: int = 0  # GET requests made for the archive (0: no download)


def locate_model(settings: Settings, *, s3_client: Any | None = None) -> ModelLocation:
    """Return the model directory from the first configured source; raise a ModelUnavailable otherwise.

    ``s3_client`` is for tests; without it botocore is imported only when the S3 source is used.
    """
    started = time.perf_counter()
    if settings.model_dir is not None:
        if not settings.model_dir.is_dir():
            raise ModelNotConfigured(
                f"{MODEL_DIR}={settings.model_dir} is not a directory; point it at a FlashRank model "
                "folder (config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json, the "
                f".onnx file) or unset it to use the model layer or {MODEL_S3_URI}"
            )
        return _found(settings.model_dir, "model_dir", started)
    layer_dir = settings.model_layer_root / settings.model_name
    if layer_dir.is_dir():
        return _found(layer_dir, "layer", started)
    if settings.model_s3_uri is not None:
        if settings.model_sha256 is None:
            raise ModelNotConfigured(f"{MODEL_SHA256} is required with {MODEL_S3_URI}")
        cache = S3ModelCache(settings, s3_client=s3_client)
        fetched = cache.fetch()
        return ModelLocation(
            directory=fetched.directory,
            source=fetched.source,
            archive_sha256=settings.model_sha256.lower(),
            seconds=time.perf_counter() - started,
            bytes_downloaded=fetched.bytes_downloaded,
            download_attempts=fetched.attempts,
        )
    raise ModelNotConfigured(_nothing_configured_message(settings, layer_dir))


def _found(directory: Path, source: Source, started: float) -> ModelLocation:
    return ModelLocation(
        directory=directory,
        source=source,
        archive_sha256=_read_archive_sha256(directory),
        seconds=time.perf_counter() - started,
    )


def _read_archive_sha256(directory: Path) -> str | None:
    try:
        value = (directory / ARCHIVE_SHA256_FILE).read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return None
    # Metadata only: a malformed marker is not worth failing init over.
    if len(value) == 64 and all(char in "0123456789abcdef" for char in value):
        return value
    return None


def _nothing_configured_message(settings: Settings, layer_dir: Path) -> str:
    layer_note = f"the model layer folder {layer_dir} ({MODEL_LAYER_ROOT}/{MODEL_NAME}) does not exist"
    try:
        present = sorted(child.name for child in settings.model_layer_root.iterdir() if child.is_dir())
    except OSError:
        present = []
    if present:
        layer_note += f" (the layer has: {', '.join(present)}; set {MODEL_NAME} to one of them)"
    return (
        f"no model found: {MODEL_DIR} is not set, {layer_note}, and {MODEL_S3_URI} is not set. "
        f"Set {MODEL_DIR} to a FlashRank model folder, attach the model layer, or set {MODEL_S3_URI} "
        f"(s3://bucket/key.zip) together with {MODEL_SHA256}"
    )


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
    (up to 20 s) knows nothing of the init budget, so S3ModelCache retries the whole download itself and
    every request it makes is one it counted. botocore directly, not boto3: boto3 adds s3transfer and ~30 ms
    of imports for nothing we use. Like boto3, it honours AWS_ENDPOINT_URL_S3, AWS_REGION and the Lambda
    role's credentials from the env.
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


@dataclass(frozen=True)
class Fetched:
    directory: Path
    source: Source
    bytes_downloaded: int = 0
    attempts: int = 0


class LoadBudget:
    """The time the S3 source may take at init (MODEL_LOAD_BUDGET_SECONDS), counted from its creation."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def remaining(self) -> float:
        return self.seconds - self.elapsed()


class _TransientFault(Exception):
    """One attempt failed in a way another GET may not: throttling, 5xx, a cut or stalled connection."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _BudgetSpent(Exception):
    """The budget ran out while the body was streaming."""


class S3ModelCache:
    """MODEL_S3_URI cached under MODEL_CACHE_DIR/<sha256>/, published by one atomic directory rename.

    Layout: ``<root>/.lock`` (flock), ``<root>/<sha256>/manifest.json`` + ``<root>/<sha256>/<model folder>/``.
    Work in progress lives in ``<root>/.tmp-*`` and is never mistaken for an entry; an entry whose manifest
    is missing or whose files do not match it (size and sha256) is moved aside and fetched again.
    """

    def __init__(self, settings: Settings, *, s3_client: Any | None = None) -> None:
        if settings.model_s3_uri is None or settings.model_sha256 is None:
            raise ModelNotConfigured(f"{MODEL_S3_URI} and {MODEL_SHA256} are both required for the S3 source")
        self._settings = settings
        self._uri = settings.model_s3_uri
        self._bucket, self._key = parse_s3_uri(settings.model_s3_uri)
        self._sha256 = settings.model_sha256.lower()
        self._root = settings.model_cache_dir
        self._entry = self._root / self._sha256
        self._client = s3_client

    def fetch(self) -> Fetched:
        """The model directory from the cache, or from S3 (then published to the cache)."""
        budget = LoadBudget(self._settings.model_load_budget_seconds)
        # Fast path without the lock: entries only ever appear complete (rename) and are verified here.
        directory = self._verified_entry(quiet=True)
        if directory is not None:
            return Fetched(directory, "cache")
        self._make_root()
        with self._locked():
            # Another process may have published the entry while we waited for the lock.
            directory = self._verified_entry(quiet=False)
            if directory is not None:
                return Fetched(directory, "cache")
            self._discard_leftovers()
            return self._download_and_publish(budget)

    # --- the cache entry ---------------------------------------------------------------------------

    def _verified_entry(self, *, quiet: bool) -> Path | None:
        if not self._entry.exists():
            return None
        model_folder, problem = self._check_entry()
        if model_folder is not None:
            return model_folder
        if not quiet:
            logger.warning(
                "model cache entry %s is unusable (%s); fetching %s again", self._entry, problem, self._uri
            )
        return None

    def _check_entry(self) -> tuple[Path | None, str]:  # noqa: PLR0911 - one return per defect
        """(model folder, "") when every file matches the manifest, else (None, why not)."""
        try:
            manifest = json.loads((self._entry / MANIFEST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, "no manifest"
        except (OSError, ValueError) as exc:
            return None, f"unreadable manifest ({exc})"
        try:
            if manifest["format"] != MANIFEST_FORMAT or manifest["archive_sha256"] != self._sha256:
                return None, "manifest of another format or archive"
            files = [
                (str(item["path"]), int(item["size"]), str(item["sha256"])) for item in manifest["files"]
            ]
            model_folder = self._entry / str(manifest["model_folder"])
        except (KeyError, TypeError, ValueError):
            return None, "malformed manifest"
        if not model_folder.resolve().is_relative_to(self._entry.resolve()) or not model_folder.is_dir():
            return None, "manifest names no model folder inside the entry"
        for relative, size, digest in files:
            path = self._entry / relative
            try:
                if path.is_symlink() or path.stat().st_size != size:
                    return None, f"{relative} has the wrong size"
                # Full hash on purpose: ~1 ms per MB (bench/model_sources.py) on a path that runs once per
                # cold start, and it warms the page cache the engine reads next; a size check alone
                # misses a zeroed or flipped block.
                if sha256_file(path) != digest:
                    return None, f"{relative} has the wrong sha256"
            except OSError:
                return None, f"{relative} is missing"
        return model_folder, ""

    def _make_root(self) -> None:
        try:
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cache_write_error(exc) from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is released by the kernel if this process dies, so a crashed fetch never blocks the next one.
        try:
            descriptor = os.open(self._root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._cache_write_error(exc) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _discard_leftovers(self) -> None:
        """Under the lock: remove an unusable entry and work left by crashed fetches."""
        if self._entry.exists():
            self._move_aside(self._entry)
        for child in self._root.iterdir():
            if child.name.startswith((_TEMP_PREFIX, _TRASH_PREFIX)):
                shutil.rmtree(child, ignore_errors=True)

    def _move_aside(self, path: Path) -> None:
        trash = self._root / f"{_TRASH_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        try:
            path.rename(trash)
        except OSError as exc:
            raise self._cache_write_error(exc) from exc
        shutil.rmtree(trash, ignore_errors=True)

    # --- download, verify, extract, publish --------------------------------------------------------

    def _download_and_publish(self, budget: LoadBudget | None = None) -> Fetched:
        budget = budget or LoadBudget(self._settings.model_load_budget_seconds)
        try:
            work = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=self._root))
        except OSError as exc:
            raise self._cache_write_error(exc) from exc
        try:
            archive = work / "archive.zip"
            downloaded, attempts = self._download(archive, budget)
            staging = work / "entry"
            extracted = self._extract(archive, staging / "model")
            archive.unlink()
            self._write_manifest(staging, extracted)
            return Fetched(self._publish(staging, extracted), "s3", downloaded, attempts)
        except OSError as exc:
            raise self._cache_write_error(exc) from exc
        finally:
            # A partial download (any failed attempt) lives only here and is never published.
            shutil.rmtree(work, ignore_errors=True)

    def _download(self, archive: Path, budget: LoadBudget) -> tuple[int, int]:
        """(bytes, GET attempts): the whole GET retried with full-jitter backoff while the budget allows."""
        max_attempts = self._settings.model_s3_max_attempts
        session = None
        attempt = 0
        while True:
            attempt += 1
            connect_timeout, read_timeout = self._attempt_timeouts(budget)
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
                size = self._download_once(client, archive, budget)
            except _TransientFault as fault:
                delay = _jitter.uniform(
                    0.0, min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
                )
                if attempt >= max_attempts or budget.remaining() < delay + MIN_ATTEMPT_SECONDS:
                    raise self._gave_up(fault, attempt, budget) from fault.__cause__
                logger.warning(
                    "model download attempt %d of %s failed (%s); retrying in %.2f s (%.2f s of the %s s "
                    "budget left)",
                    attempt, self._uri, fault.kind, delay, budget.remaining(), f"{budget.seconds:g}",
                    extra={"attempt": attempt, "fault": fault.kind},
                )  # fmt: skip
                time.sleep(delay)
                continue
            except _BudgetSpent as spent:
                raise ModelDownloadFailed(
                    f"the download of {self._uri} did not finish within {MODEL_LOAD_BUDGET_SECONDS}="
                    f"{budget.seconds:g} s ({attempt} attempt(s), {spent} bytes of the last one); check the "
                    "bandwidth to S3 (VPC endpoint or NAT), or use the model layer for a model this large"
                ) from None
            if attempt > 1:
                logger.warning(
                    "model downloaded from %s after %d attempts in %.2f s",
                    self._uri, attempt, budget.elapsed(), extra={"attempts": attempt},
                )  # fmt: skip
            return size, attempt

    def _attempt_timeouts(self, budget: LoadBudget) -> tuple[float, float]:
        """Connect and read timeouts for one attempt, together no longer than what the budget has left."""
        remaining = max(budget.remaining(), MIN_ATTEMPT_SECONDS)
        connect = min(self._settings.model_s3_connect_timeout_seconds, remaining / 2)
        read = min(self._settings.model_s3_read_timeout_seconds, remaining - connect)
        return connect, read

    def _gave_up(self, fault: _TransientFault, attempts: int, budget: LoadBudget) -> ModelDownloadFailed:
        limit = (
            f"{MODEL_S3_MAX_ATTEMPTS}={self._settings.model_s3_max_attempts}"
            if attempts >= self._settings.model_s3_max_attempts
            else f"{MODEL_LOAD_BUDGET_SECONDS}={budget.seconds:g}"
        )
        return ModelDownloadFailed(
            f"could not download {self._uri}: {attempts} attempt(s) in {budget.elapsed():.1f} s all failed "
            f"(last: {fault.kind}); {limit} allows no more. Check S3 and the network path to it (VPC "
            "endpoint or NAT); a later request retries"
        )

    def _download_once(self, client: Any, archive: Path, budget: LoadBudget) -> int:
        """One GET streamed to ``archive`` (rewritten from the start), verified against MODEL_SHA256."""
        from botocore import exceptions as sdk

        digest = hashlib.sha256()
        size = 0
        body: Any = None
        try:
            response = client.get_object(Bucket=self._bucket, Key=self._key)
            body = response["Body"]
            self._check_object_size(int(response.get("ContentLength") or 0))
            with self._open_for_write(archive) as sink:
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                    digest.update(chunk)
                    self._write(sink, chunk)
                    size += len(chunk)
                    if budget.remaining() <= 0:
                        raise _BudgetSpent(size)
        except sdk.ClientError as exc:
            if self._is_retryable(exc):
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                raise _TransientFault(f"{error.get('Code') or 'HTTP'} {status}") from exc
            raise self._client_error(exc) from exc
        except sdk.NoCredentialsError as exc:
            raise ModelAccessDenied(
                f"no AWS credentials to read {self._uri}; give the function a role that allows s3:GetObject"
            ) from exc
        except (sdk.HTTPClientError, sdk.ConnectionError, sdk.IncompleteReadError, sdk.ChecksumError) as exc:
            # Network faults, those while the body streams included (botocore never retries these).
            raise _TransientFault(type(exc).__name__) from exc
        except OSError as exc:
            # Disk errors were already turned into ModelUnavailable by _write; these are network ones.
            raise _TransientFault(type(exc).__name__) from exc
        except sdk.BotoCoreError as exc:
            raise ModelDownloadFailed(
                f"could not download {self._uri} ({type(exc).__name__}: {exc}); check the function's AWS "
                "configuration"
            ) from exc
        finally:
            if body is not None:
                body.close()
        actual = digest.hexdigest()
        if actual != self._sha256:
            raise ModelChecksumMismatch(
                f"{self._uri} has sha256 {actual} ({size} bytes), but {MODEL_SHA256} is {self._sha256}; "
                f"upload the right archive or set {MODEL_SHA256} to the archive's checksum"
            )
        return size

    @contextmanager
    def _open_for_write(self, path: Path) -> Iterator[BinaryIO]:
        try:
            sink = path.open("wb")
        except OSError as exc:
            raise self._cache_write_error(exc) from exc
        try:
            yield sink
        finally:
            try:
                sink.close()
            except OSError as exc:  # a delayed ENOSPC can surface on close
                raise self._cache_write_error(exc) from exc

    def _write(self, sink: BinaryIO, chunk: bytes) -> None:
        try:
            sink.write(chunk)
        except OSError as exc:
            raise self._cache_write_error(exc) from exc

    def _check_object_size(self, object_bytes: int) -> None:
        limit = self._settings.model_archive_max_bytes
        if object_bytes > limit:
            raise UnsafeModelArchive(
                f"{self._uri} is {object_bytes} bytes, more than the limit of {limit} "
                "(MODEL_ARCHIVE_MAX_BYTES); refusing to download it"
            )
        # The archive and its extracted files sit side by side until the archive is deleted.
        needed = 2 * object_bytes
        free = shutil.disk_usage(self._root).free
        if free < needed:
            raise ModelCacheNoSpace(
                f"{self._uri} is {object_bytes} bytes and needs about {needed} bytes under "
                f"{MODEL_CACHE_DIR}={self._root}, but only {free} are free; raise the function's ephemeral "
                "storage or free space in /tmp"
            )

    def _extract(self, archive: Path, destination: Path) -> ExtractedArchive:
        return extract_zip(
            archive,
            destination,
            max_bytes=self._settings.model_archive_max_bytes,
            max_files=self._settings.model_archive_max_files,
            label=self._uri,
        )

    def _write_manifest(self, staging: Path, extracted: ExtractedArchive) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "archive_sha256": self._sha256,
            "source": self._uri,
            "model_folder": f"model/{extracted.top_folder}",
            "files": [
                {"path": f"model/{member.path}", "size": member.size, "sha256": member.sha256}
                for member in extracted.members
            ],
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    def _publish(self, staging: Path, extracted: ExtractedArchive) -> Path:
        try:
            staging.rename(self._entry)
        except OSError as exc:
            # Only a process that did not take the lock can get here first; its entry is as good as ours.
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or self._check_entry()[0] is None:
                raise
        return self._entry / "model" / extracted.top_folder

    # --- errors ------------------------------------------------------------------------------------

    def _client_error(self, exc: Any) -> ModelUnavailable:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _MISSING_CODES or status == 404:
            what = "bucket" if code == "NoSuchBucket" else "object"
            return ModelObjectMissing(
                f"{self._uri} does not exist (the {what} is missing: {code}); upload the model archive there "
                f"or fix {MODEL_S3_URI}"
            )
        if code in _DENIED_CODES or status == 403:
            return ModelAccessDenied(
                f"access to {self._uri} was denied ({code}); allow s3:GetObject on it in the function's role "
                "(and kms:Decrypt if the bucket uses a KMS key), and check the bucket policy"
            )
        return ModelDownloadFailed(
            f"could not download {self._uri}: S3 answered {code or status}, which is not retried; check the "
            "request S3 refused (bucket policy, KMS key, region)"
        )

    @staticmethod
    def _is_retryable(exc: Any) -> bool:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _RETRYABLE_CODES or status in _RETRYABLE_STATUSES

    def _cache_write_error(self, exc: OSError) -> ModelUnavailable:
        if exc.errno in _NO_SPACE_ERRNOS:
            return ModelCacheNoSpace(
                f"ran out of space writing {self._uri} under {MODEL_CACHE_DIR}={self._root}; raise the "
                "function's ephemeral storage or free space in /tmp"
            )
        return ModelDownloadFailed(
            f"could not write the model cache for {self._uri} under {MODEL_CACHE_DIR}={self._root} "
            f"({os.strerror(exc.errno) if exc.errno else type(exc).__name__}); point {MODEL_CACHE_DIR} at a "
            "writable directory"
        )
