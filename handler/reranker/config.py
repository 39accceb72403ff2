"""The function's settings, each declared once; read once from the environment, every bad value reported at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reranker.errors import ModelNotConfigured
from reranker.setting import DeclaredSetting, EnvironmentReader, declared_settings, setting

# Variables other modules cite in their messages; every other one is spelled only in its declaration.
MODEL_DIR = "MODEL_DIR"
MODEL_NAME = "MODEL_NAME"
MODEL_LAYER_ROOT = "MODEL_LAYER_ROOT"
MODEL_S3_URI = "MODEL_S3_URI"
MODEL_SHA256 = "MODEL_SHA256"
MODEL_CACHE_DIR = "MODEL_CACHE_DIR"
MODEL_S3_MAX_ATTEMPTS = "MODEL_S3_MAX_ATTEMPTS"
MODEL_LOAD_BUDGET_SECONDS = "MODEL_LOAD_BUDGET_SECONDS"
AUTH_MODE = "AUTH_MODE"
AUTH_TOKENS_PARAMETER = "AUTH_TOKENS_PARAMETER"
# Set by Lambda, not by the deployment.
LAMBDA_MEMORY_SIZE = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

# Lambda grants CPU in proportion to memory: one vCPU per 1769 MB, six at its 10,240 MB maximum. Below 1769 MB
# the CPU is a quota (os.cpu_count() still says 2), so a second run or a spinning thread only adds contention.
ONE_VCPU_MEMORY_MB = 1769
MAX_LAMBDA_VCPUS = 6

Schedule = Literal["auto", "single", "sorted_batches", "exact_batches"]
LongDocuments = Literal["truncate", "window"]
DeadlinePolicy = Literal["fallback", "error"]
AuthMode = Literal["none", "bearer"]


class SettingsError(ModelNotConfigured):
    """One or more environment settings are invalid; the message lists every one of them."""


@dataclass(frozen=True)
class _ModelSource:
    """Where the model comes from (model_store.py), in this order: model_dir, layer, S3."""

    model_dir: Path | None = setting(
        MODEL_DIR,
        None,
        "a FlashRank-format model directory; wins over everything else",
        shown_allowed="a directory",
    )
    model_name: str = setting(
        MODEL_NAME, "ms-marco-TinyBERT-L-2-v2", "the layer's model: `<MODEL_LAYER_ROOT>/<MODEL_NAME>`"
    )
    model_layer_root: Path = setting(
        MODEL_LAYER_ROOT,
        Path("/opt/models"),
        "where the model layer keeps its models",
        shown_allowed="a directory",
    )
    model_s3_uri: str | None = setting(
        MODEL_S3_URI,
        None,
        "a FlashRank model zip in S3, downloaded at init when no model directory or layer has the model",
        shown_allowed="`s3://bucket/key.zip`",
    )
    model_sha256: str | None = setting(
        MODEL_SHA256,
        None,
        "sha256 of the MODEL_S3_URI archive (required with it), checked before it is unpacked",
        shown_allowed="64 hexadecimal characters",
    )
    model_cache_dir: Path = setting(
        MODEL_CACHE_DIR,
        Path("/tmp/reranker-models"),  # noqa: S108 - Lambda's only writable disk
        "where the S3 model is cached (verified manifest, atomic publish)",
        shown_allowed="a directory",
    )
    model_archive_max_bytes: int = setting(
        "MODEL_ARCHIVE_MAX_BYTES",
        1024 * 1024 * 1024,
        "zip-bomb limit of the S3 archive: the uncompressed bytes its entries may declare (default 1 GiB)",
    )
    model_archive_max_files: int = setting(
        "MODEL_ARCHIVE_MAX_FILES", 64, "zip-bomb limit of the S3 archive: the entries it may hold"
    )
    # The S3 download is retried whole (throttling, 5xx, a cut or stalled body) up to model_s3_max_attempts
    # GETs, and every attempt, timeout and backoff sleep fits in model_load_budget_seconds, which keeps the
    # init well under Lambda's 10 s limit. A failure that outlives it is tried again by a later request, at
    # most every model_load_retry_seconds.
    model_s3_max_attempts: int = setting(
        MODEL_S3_MAX_ATTEMPTS,
        4,
        "GETs of the S3 archive at init, each a whole download (throttling, 5xx, network, cut or stalled body); "
        "403/404 are not retried",
        maximum=10,
    )
    model_s3_connect_timeout_seconds: float = setting(
        "MODEL_S3_CONNECT_TIMEOUT_SECONDS",
        2.0,
        "S3 connect timeout per attempt (seconds, fractions allowed), shortened to fit what is left of the budget",
        minimum=0.1,
        maximum=60,
    )
    model_s3_read_timeout_seconds: float = setting(
        "MODEL_S3_READ_TIMEOUT_SECONDS",
        3.0,
        "S3 read timeout per attempt (seconds, fractions allowed), shortened to fit what is left of the budget",
        minimum=0.1,
        maximum=300,
    )
    model_load_budget_seconds: float = setting(
        MODEL_LOAD_BUDGET_SECONDS,
        8.0,
        "time the S3 source may take at init: every attempt, timeout and backoff sleep fits in it",
        minimum=0.5,
        maximum=900,
    )
    model_load_retry_seconds: float = setting(
        "MODEL_LOAD_RETRY_SECONDS",
        30.0,
        "after an init that S3 failed, the soonest a request tries the load again",
        maximum=3600,
    )


@dataclass(frozen=True)
class _Inference:
    """Inference (engine.py)."""

    engine_schedule: Schedule = setting(
        "ENGINE_SCHEDULE",
        "auto",
        "`single` (each pair alone, unpadded), `sorted_batches` (length-sorted micro-batches), `exact_batches` "
        "(int8 models: a batched graph, built at load, whose padded batches give each pair exactly the score it "
        "gets alone, for short pairs where the run costs measured on the first such request say batches are "
        "quicker; a model whose graph cannot be rewritten runs each pair alone); `auto` = single for int8 "
        "models, sorted batches for fp32",
    )
    engine_batch_size: int = setting(
        "ENGINE_BATCH_SIZE", 8, "micro-batch size for `sorted_batches`", maximum=256
    )
    engine_exact_batch_max_pairs: int = setting(
        "ENGINE_EXACT_BATCH_MAX_PAIRS",
        16,
        "pairs per batch at most for `exact_batches` (the plan picks sizes up to it)",
        maximum=256,
    )
    engine_exact_batch_max_tokens: int = setting(
        "ENGINE_EXACT_BATCH_MAX_TOKENS",
        64,
        "for `exact_batches`: pairs of more tokens always run alone; the run costs are measured up to this length",
        minimum=2,
        maximum=512,
    )
    engine_exact_batch_min_gain_percent: int = setting(
        "ENGINE_EXACT_BATCH_MIN_GAIN_PERCENT",
        10,
        "for `exact_batches`: a batch is planned only where the measured run costs say it saves at least this "
        "share of the time its pairs take alone (a margin for the measuring error)",
        minimum=0,
        maximum=90,
    )
    engine_cost_probe_ms: int = setting(
        "ENGINE_COST_PROBE_MS",
        20,
        "for `exact_batches`: time the run-cost probe (on the first request that could batch) may take beyond "
        "its first round of timed runs, which always runs; 0 = that round only",
        minimum=0,
        maximum=10_000,
    )
    engine_max_length: int = setting(
        "ENGINE_MAX_LENGTH", 512, "token limit (also capped by the model's `model_max_length`)", maximum=8192
    )
    ort_intra_op_threads: int = setting("ORT_INTRA_OP_THREADS", 1, "onnxruntime threads per run", maximum=64)
    ort_allow_spinning: bool = setting(
        "ORT_ALLOW_SPINNING",
        True,
        "onnxruntime's intra-op worker threads spin while they wait for work (only runs with more than one "
        "thread have workers)",
        shown_default="from memory: false below 1769 MB (a CPU quota), true from there",
    )
    engine_parallel_runs: int = setting(
        "ENGINE_PARALLEL_RUNS",
        1,
        "model runs in flight at once, one thread each",
        maximum=16,
        shown_default="from memory: its vCPUs (MB / 1769 to the nearest, 1 to 6); off Lambda: min(6, CPUs)",
    )
    engine_tail_intra_op_threads: int = setting(
        "ENGINE_TAIL_INTRA_OP_THREADS",
        1,
        "onnxruntime threads of each run of a request small enough that its runs times these threads fit "
        "ENGINE_PARALLEL_RUNS (a request of very few passages; a second session, so the model's memory twice); "
        "1 = off",
        maximum=64,
    )


@dataclass(frozen=True)
class _Requests:
    """Request limits (schemas.py), long documents, deadlines and the score cache."""

    max_passages: int = setting("MAX_PASSAGES", 1000, "passages per request (413 above)")
    max_passage_chars: int = setting(
        "MAX_PASSAGE_CHARS",
        16_384,
        "characters of a passage that are scored; longer ones are cut before tokenizing "
        "(`PreTruncatedPassages`) but returned whole",
    )
    max_query_chars: int = setting("MAX_QUERY_CHARS", 2_048, "query length (413 above)")
    max_total_chars: int = setting(
        "MAX_TOTAL_CHARS", 4_000_000, "query + passage characters per request (413 above)"
    )
    max_batch_requests: int = setting("MAX_BATCH_REQUESTS", 100, "requests per batch invocation")
    # Long documents, deadlines, score cache.
    long_documents: LongDocuments = setting(
        "LONG_DOCUMENTS",
        "truncate",
        "long passages: `truncate` scores the first ENGINE_MAX_LENGTH tokens of query + passage, `window` "
        "scores overlapping windows and keeps the best (a request may choose its own)",
    )
    window_max_per_passage: int = setting(
        "WINDOW_MAX_PER_PASSAGE", 8, "windows scored per passage at most in `window` mode"
    )
    window_overlap_tokens: int = setting(
        "WINDOW_OVERLAP_TOKENS", 64, "tokens shared by neighbouring windows", minimum=0, maximum=256
    )
    deadline_policy: DeadlinePolicy = setting(
        "DEADLINE_POLICY",
        "fallback",
        "when time runs out: `fallback` answers with the unscored passages appended in input order, "
        "`error` fails with `DeadlineExceeded`",
    )
    deadline_margin_ms: int = setting(
        "DEADLINE_MARGIN_MS", 500, "scoring stops this long before the function's timeout", minimum=0
    )
    score_cache_mb: float = setting(
        "SCORE_CACHE_MB", 32.0, "warm score cache size (MiB); 0 = off", maximum=8192
    )


@dataclass(frozen=True)
class Settings(_Requests, _Inference, _ModelSource):
    """Every setting of the function: its environment variable, type, default, bounds and doc, in one place.

    ``engine.EngineOptions`` and ``schemas.Limits`` take their defaults from here, and docs/configuration.md
    is generated from it (``python -m tools.settings_table --write``). The sections are bases so that each stays
    readable; a dataclass takes its bases' fields from the last base to the first, so the settings keep the order
    in which they are read and documented: model source, inference, requests, then the ones declared here.
    """

    # Exact fan-out across invocations of this function (fanout.py, lambda_invoker.py).
    fanout_max_workers: int = setting(
        "FANOUT_MAX_WORKERS",
        0,
        "other invocations of this function (its own version or alias) a big request may be split across, "
        "besides the one that received it; 0 = off",
        minimum=0,
        maximum=50,
    )
    fanout_target_ms: int = setting(
        "FANOUT_TARGET_MS",
        1000,
        "a request whose estimated inference time (its tokens x the cost per token) is above this is split "
        "into shards of balanced token cost, each estimated near it",
        minimum=10,
    )
    fanout_token_cost_us: float = setting(
        "FANOUT_TOKEN_COST_US",
        285.0,
        "inference time per model token (microseconds) assumed until this environment has measured its own "
        "on 2,048 tokens it scored (then the measured cost, recent requests weighing most); "
        "the default is what `python -m bench.fanout` measured for a MiniLM-L-12-sized model on one vCPU",
        minimum=0.001,
        maximum=100_000,
    )
    fanout_measure_token_cost: bool = setting(
        "FANOUT_MEASURE_TOKEN_COST",
        True,
        "learn the cost per token from the requests this environment scores; off: always FANOUT_TOKEN_COST_US",
    )
    fanout_connect_timeout_seconds: float = setting(
        "FANOUT_CONNECT_TIMEOUT_SECONDS",
        1.0,
        "connect timeout of a shard's invoke; an answer is awaited until the shard's slice of the deadline",
        minimum=0.1,
        maximum=30,
    )
    # Bearer-token auth for Cohere-style clients.
    auth_mode: AuthMode = setting(
        AUTH_MODE,
        "none",
        "`bearer`: the function checks `Authorization: Bearer` tokens; `none`: it checks nothing (IAM, if any, "
        "is enforced before it); the template sets it from `AuthMode`",
    )
    auth_tokens_parameter: str | None = setting(
        AUTH_TOKENS_PARAMETER,
        None,
        "name of the SSM SecureString parameter holding the accepted bearer tokens (required with "
        "AUTH_MODE=bearer)",
        shown_allowed="an SSM parameter name",
    )
    auth_tokens_max_age_seconds: int = setting(
        "AUTH_TOKENS_MAX_AGE_SECONDS",
        300,
        "how long the fetched tokens are cached before SSM is read again",
        minimum=0,
    )
    log_payloads: bool = setting("LOG_PAYLOADS", False, "log query and passage text (debugging only)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; raise SettingsError naming each bad one, or return the settings."""
        env = os.environ if environ is None else environ
        reader = EnvironmentReader(env)
        memory_mb = reader.integer(LAMBDA_MEMORY_SIZE, 0, minimum=0)
        defaults = derived_defaults(memory_mb)
        values: dict[str, Any] = {
            item.name: item.read(reader, defaults.get(item.name, item.default)) for item in DECLARED_SETTINGS
        }
        settings = cls(**values)
        problems = [*reader.problems, *_inconsistencies(settings)]
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings


def derived_defaults(memory_mb: int) -> dict[str, Any]:
    """Defaults that follow the memory size (0 off Lambda), by attribute name."""
    # Small per-pair runs gain nothing from intra-op threads (measured: slower); each vCPU instead runs
    # its own pair, so the parallelism follows the vCPUs Lambda grants for the memory size.
    return {
        "engine_parallel_runs": lambda_vcpus(memory_mb)
        if memory_mb
        else min(MAX_LAMBDA_VCPUS, os.cpu_count() or 1),
        "ort_allow_spinning": not 0 < memory_mb < ONE_VCPU_MEMORY_MB,
    }


def _inconsistencies(settings: Settings) -> list[str]:
    """What is wrong between settings that are each valid alone."""
    problems = []
    if settings.model_s3_uri is not None:
        if not settings.model_s3_uri.startswith("s3://") or "/" not in settings.model_s3_uri[5:]:
            problems.append(f"{MODEL_S3_URI} must look like s3://bucket/key.zip")
        if settings.model_sha256 is None:
            problems.append(f"{MODEL_SHA256} is required with {MODEL_S3_URI}")
    if settings.model_sha256 is not None and not _is_sha256(settings.model_sha256):
        problems.append(f"{MODEL_SHA256} must be 64 hexadecimal characters")
    if settings.auth_mode == "bearer" and settings.auth_tokens_parameter is None:
        problems.append(f"{AUTH_TOKENS_PARAMETER} is required with {AUTH_MODE}=bearer")
    return problems


def lambda_vcpus(memory_mb: int) -> int:
    """The whole vCPUs Lambda grants for a memory size: MB / 1769 to the nearest (halves up), 1 to 6.

    Rounded, not cut: 10,240 MB is 5.8 vCPUs of quota spread over six, and from 1.5 vCPUs a second run in
    flight uses the quota a single one leaves idle. Below 1769 MB (a fraction of one vCPU) it is 1.
    """
    nearest = (2 * memory_mb + ONE_VCPU_MEMORY_MB) // (2 * ONE_VCPU_MEMORY_MB)
    return max(1, min(MAX_LAMBDA_VCPUS, nearest))


# Every setting's declaration, in order: what from_env reads, and what the docs and the tests hold others to.
DECLARED_SETTINGS: tuple[DeclaredSetting, ...] = declared_settings(Settings)


@dataclass(frozen=True)
class PlatformVariable:
    """A variable Lambda or Powertools sets or reads, which this code reads too (documentation only)."""

    variable: str
    shown_default: str
    doc: str


PLATFORM_VARIABLES = (
    PlatformVariable(
        LAMBDA_MEMORY_SIZE,
        "set by Lambda",
        "the memory size (MB); `ENGINE_PARALLEL_RUNS` and `ORT_ALLOW_SPINNING` follow it when unset",
    ),
    PlatformVariable(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "set by Lambda",
        "`snap-start` while a version is published with SnapStart: a failed model load then fails the publish",
    ),
    PlatformVariable("AWS_LAMBDA_FUNCTION_VERSION", "set by Lambda", "the version `/health` reports"),
    PlatformVariable("LAMBDA_TASK_ROOT", "set by Lambda", "tracing is on only where it is set (on Lambda)"),
    PlatformVariable("AWS_SAM_LOCAL", "set by `sam local`", "turns tracing off"),
    PlatformVariable("AWS_CHALICE_CLI_MODE", "set by Chalice", "turns tracing off"),
    PlatformVariable("POWERTOOLS_SERVICE_NAME", "reranker", "the `service` of every log line and metric"),
    PlatformVariable("POWERTOOLS_METRICS_NAMESPACE", "Reranker", "the CloudWatch namespace of the metrics"),
    PlatformVariable("POWERTOOLS_LOG_LEVEL", "INFO", "the log level (Powertools reads it)"),
    PlatformVariable(
        "POWERTOOLS_TRACE_DISABLED",
        "false",
        "true: no X-Ray and no `aws_xray_sdk` import (tracing is also off outside Lambda)",
    ),
)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(char in "0123456789abcdefABCDEF" for char in value)
