"""Settings read once from the environment; every bad value is reported at once, by name."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, TypeVar

from reranker.errors import ModelNotConfigured

DEFAULT_MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"

# Environment variable names: the one place they are spelled.
MODEL_DIR = "MODEL_DIR"
MODEL_NAME = "MODEL_NAME"
MODEL_LAYER_ROOT = "MODEL_LAYER_ROOT"
MODEL_S3_URI = "MODEL_S3_URI"
MODEL_SHA256 = "MODEL_SHA256"
MODEL_CACHE_DIR = "MODEL_CACHE_DIR"
MODEL_ARCHIVE_MAX_BYTES = "MODEL_ARCHIVE_MAX_BYTES"
MODEL_ARCHIVE_MAX_FILES = "MODEL_ARCHIVE_MAX_FILES"
MODEL_S3_MAX_ATTEMPTS = "MODEL_S3_MAX_ATTEMPTS"
MODEL_S3_CONNECT_TIMEOUT_SECONDS = "MODEL_S3_CONNECT_TIMEOUT_SECONDS"
MODEL_S3_READ_TIMEOUT_SECONDS = "MODEL_S3_READ_TIMEOUT_SECONDS"
MODEL_LOAD_BUDGET_SECONDS = "MODEL_LOAD_BUDGET_SECONDS"
MODEL_LOAD_RETRY_SECONDS = "MODEL_LOAD_RETRY_SECONDS"
ENGINE_SCHEDULE = "ENGINE_SCHEDULE"
ENGINE_BATCH_SIZE = "ENGINE_BATCH_SIZE"
ENGINE_MAX_LENGTH = "ENGINE_MAX_LENGTH"
ORT_INTRA_OP_THREADS = "ORT_INTRA_OP_THREADS"
ENGINE_PARALLEL_RUNS = "ENGINE_PARALLEL_RUNS"
LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
MAX_PASSAGES = "MAX_PASSAGES"
MAX_PASSAGE_CHARS = "MAX_PASSAGE_CHARS"
MAX_QUERY_CHARS = "MAX_QUERY_CHARS"
MAX_TOTAL_CHARS = "MAX_TOTAL_CHARS"
MAX_BATCH_REQUESTS = "MAX_BATCH_REQUESTS"
LONG_DOCUMENTS = "LONG_DOCUMENTS"
WINDOW_MAX_PER_PASSAGE = "WINDOW_MAX_PER_PASSAGE"
WINDOW_OVERLAP_TOKENS = "WINDOW_OVERLAP_TOKENS"
DEADLINE_POLICY = "DEADLINE_POLICY"
DEADLINE_MARGIN_MS = "DEADLINE_MARGIN_MS"
SCORE_CACHE_MB = "SCORE_CACHE_MB"
AUTH_MODE = "AUTH_MODE"
AUTH_TOKENS_PARAMETER = "AUTH_TOKENS_PARAMETER"
AUTH_TOKENS_MAX_AGE_SECONDS = "AUTH_TOKENS_MAX_AGE_SECONDS"
LOG_PAYLOADS = "LOG_PAYLOADS"

# Lambda gives one full vCPU at 1769 MB; below that the CPU is throttled by quota while os.cpu_count()
# still says 2, so a second ORT thread only adds contention.
ONE_VCPU_MEMORY_MB = 1769

Schedule = Literal["auto", "single", "sorted_batches"]
LongDocuments = Literal["truncate", "window"]
DeadlinePolicy = Literal["fallback", "error"]
AuthMode = Literal["none", "bearer"]

T = TypeVar("T")


class SettingsError(ModelNotConfigured):
    """One or more environment settings are invalid; the message lists every one of them."""


@dataclass(frozen=True)
class Settings:
    # Where the model comes from (model_store.py), in this order: model_dir, layer, S3.
    model_dir: Path | None = None
    model_name: str = DEFAULT_MODEL_NAME
    model_layer_root: Path = Path("/opt/models")
    model_s3_uri: str | None = None
    model_sha256: str | None = None
    model_cache_dir: Path = Path("/tmp/reranker-models")  # noqa: S108 - Lambda's only writable disk
    model_archive_max_bytes: int = 1024 * 1024 * 1024
    model_archive_max_files: int = 64
    # The S3 download is retried whole (throttling, 5xx, a cut or stalled body) up to model_s3_max_attempts
    # GETs, and every attempt, timeout and backoff sleep fits in model_load_budget_seconds, which keeps the
    # init well under Lambda's 10 s limit. A failure that outlives it is tried again by a later request, at
    # most every model_load_retry_seconds.
    model_s3_max_attempts: int = 4
    model_s3_connect_timeout_seconds: float = 2.0
    model_s3_read_timeout_seconds: float = 3.0
    model_load_budget_seconds: float = 8.0
    model_load_retry_seconds: float = 30.0
    # Inference (engine.py).
    engine_schedule: Schedule = "auto"
    engine_batch_size: int = 8
    engine_max_length: int = 512
    ort_intra_op_threads: int = 1
    engine_parallel_runs: int = 1
    # Request limits (schemas.py).
    max_passages: int = 1000
    max_passage_chars: int = 16_384
    max_query_chars: int = 2_048
    max_total_chars: int = 4_000_000
    max_batch_requests: int = 100
    # Long documents, deadlines, score cache.
    long_documents: LongDocuments = "truncate"
    window_max_per_passage: int = 8
    window_overlap_tokens: int = 64
    deadline_policy: DeadlinePolicy = "fallback"
    deadline_margin_ms: int = 500
    score_cache_mb: float = 32.0
    # Bearer-token auth for Cohere-style clients.
    auth_mode: AuthMode = "none"
    auth_tokens_parameter: str | None = None
    auth_tokens_max_age_seconds: int = 300
    log_payloads: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; raise SettingsError naming each bad one, or return the settings."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        memory_mb = reader.integer(LAMBDA_MEMORY_SIZE, 0, minimum=0)
        # Small per-pair runs gain nothing from intra-op threads (measured: slower); each vCPU instead runs
        # its own pair, so the parallelism follows the vCPUs Lambda grants for the memory size.
        vcpus = 2 if memory_mb >= ONE_VCPU_MEMORY_MB * 2 else 1
        if memory_mb == 0:
            vcpus = min(2, os.cpu_count() or 1)
        settings = cls(
            model_dir=reader.path(MODEL_DIR),
            model_name=reader.text(MODEL_NAME, DEFAULT_MODEL_NAME),
            model_layer_root=reader.path(MODEL_LAYER_ROOT) or cls.model_layer_root,
            model_s3_uri=reader.optional(MODEL_S3_URI),
            model_sha256=reader.optional(MODEL_SHA256),
            model_cache_dir=reader.path(MODEL_CACHE_DIR) or cls.model_cache_dir,
            model_archive_max_bytes=reader.integer(MODEL_ARCHIVE_MAX_BYTES, cls.model_archive_max_bytes),
            model_archive_max_files=reader.integer(MODEL_ARCHIVE_MAX_FILES, cls.model_archive_max_files),
            model_s3_max_attempts=reader.integer(
                MODEL_S3_MAX_ATTEMPTS, cls.model_s3_max_attempts, maximum=10
            ),
            model_s3_connect_timeout_seconds=reader.number(
                MODEL_S3_CONNECT_TIMEOUT_SECONDS,
                cls.model_s3_connect_timeout_seconds,
                minimum=0.1,
                maximum=60,
            ),
            model_s3_read_timeout_seconds=reader.number(
                MODEL_S3_READ_TIMEOUT_SECONDS, cls.model_s3_read_timeout_seconds, minimum=0.1, maximum=300
            ),
            model_load_budget_seconds=reader.number(
                MODEL_LOAD_BUDGET_SECONDS, cls.model_load_budget_seconds, minimum=0.5, maximum=900
            ),
            model_load_retry_seconds=reader.number(
                MODEL_LOAD_RETRY_SECONDS, cls.model_load_retry_seconds, maximum=3600
            ),
            engine_schedule=reader.choice(ENGINE_SCHEDULE, "auto", ("auto", "single", "sorted_batches")),
            engine_batch_size=reader.integer(ENGINE_BATCH_SIZE, cls.engine_batch_size, maximum=256),
            engine_max_length=reader.integer(ENGINE_MAX_LENGTH, cls.engine_max_length, maximum=8192),
            ort_intra_op_threads=reader.integer(ORT_INTRA_OP_THREADS, 1, maximum=64),
            engine_parallel_runs=reader.integer(ENGINE_PARALLEL_RUNS, vcpus, maximum=16),
            max_passages=reader.integer(MAX_PASSAGES, cls.max_passages),
            max_passage_chars=reader.integer(MAX_PASSAGE_CHARS, cls.max_passage_chars),
            max_query_chars=reader.integer(MAX_QUERY_CHARS, cls.max_query_chars),
            max_total_chars=reader.integer(MAX_TOTAL_CHARS, cls.max_total_chars),
            max_batch_requests=reader.integer(MAX_BATCH_REQUESTS, cls.max_batch_requests),
            long_documents=reader.choice(LONG_DOCUMENTS, "truncate", ("truncate", "window")),
            window_max_per_passage=reader.integer(WINDOW_MAX_PER_PASSAGE, cls.window_max_per_passage),
            window_overlap_tokens=reader.integer(
                WINDOW_OVERLAP_TOKENS, cls.window_overlap_tokens, minimum=0, maximum=256
            ),
            deadline_policy=reader.choice(DEADLINE_POLICY, "fallback", ("fallback", "error")),
            deadline_margin_ms=reader.integer(DEADLINE_MARGIN_MS, cls.deadline_margin_ms, minimum=0),
            score_cache_mb=reader.number(SCORE_CACHE_MB, cls.score_cache_mb, maximum=8192),
            auth_mode=reader.choice(AUTH_MODE, "none", ("none", "bearer")),
            auth_tokens_parameter=reader.optional(AUTH_TOKENS_PARAMETER),
            auth_tokens_max_age_seconds=reader.integer(
                AUTH_TOKENS_MAX_AGE_SECONDS, cls.auth_tokens_max_age_seconds, minimum=0
            ),
            log_payloads=reader.boolean(LOG_PAYLOADS, default=False),
        )
        problems = list(reader.problems)
        if settings.model_s3_uri is not None:
            if not settings.model_s3_uri.startswith("s3://") or "/" not in settings.model_s3_uri[5:]:
                problems.append(f"{MODEL_S3_URI} must look like s3://bucket/key.zip")
            if settings.model_sha256 is None:
                problems.append(f"{MODEL_SHA256} is required with {MODEL_S3_URI}")
        if settings.model_sha256 is not None and not _is_sha256(settings.model_sha256):
            problems.append(f"{MODEL_SHA256} must be 64 hexadecimal characters")
        if settings.auth_mode == "bearer" and settings.auth_tokens_parameter is None:
            problems.append(f"{AUTH_TOKENS_PARAMETER} is required with {AUTH_MODE}=bearer")
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings

    def describe(self) -> dict[str, object]:
        """The non-secret settings, for /health and the init log line."""
        shown = {}
        for item in fields(self):
            value = getattr(self, item.name)
            shown[item.name] = str(value) if isinstance(value, Path) else value
        return shown


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(char in "0123456789abcdefABCDEF" for char in value)


class _Reader:
    """Parses environment values and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def _parse(self, name: str, default: T, convert: Callable[[str], T], expected: str) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            self.problems.append(f"{name} must be {expected}, got {raw!r}")
            return default

    def integer(self, name: str, default: int, *, minimum: int = 1, maximum: int | None = None) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            self.problems.append(f"{name} must be {bounds}, got {value}")
            return default
        return value

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        value = self._parse(name, default, float, "a number")
        # "not >=" also refuses nan; "inf" fails the maximum when there is one.
        if not value >= minimum or (maximum is not None and not value <= maximum):
            bounds = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
            self.problems.append(f"{name} must be {bounds}, got {value}")
            return default
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def choice(self, name: str, default: T, allowed: tuple[T, ...]) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        for option in allowed:
            if raw == option:
                return option
        self.problems.append(f"{name} must be one of {', '.join(map(str, allowed))}, got {raw!r}")
        return default
