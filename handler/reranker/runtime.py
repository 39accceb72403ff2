"""The composition root: what init built from the environment (a Ready model, or why it Failed), held once.

app.py builds it at import (the Lambda init phase, snapshotted by SnapStart); a transient failure is
retried by a later request. Everything on the hot path gets a Ready or a ModelUnavailable, never None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from reranker import observability as obs
from reranker.auth import BearerAuthenticator
from reranker.config import Settings
from reranker.engine import CrossEncoder, EngineOptions
from reranker.errors import ModelDownloadFailed, ModelUnavailable, RerankerError
from reranker.model_store import ModelLocation, locate_model
from reranker.observability import logger
from reranker.scoring import Clock, Scorer

INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
# The warm-up's fixed pair (snapstart.py): tiny, so it costs one short model run, and never a caller's text.
WARM_UP_QUERY = "warm-up query"
WARM_UP_PASSAGE = "a fixed passage scored once before the SnapStart snapshot"


@dataclass(frozen=True)
class Ready:
    """A loaded model and everything built around it."""

    settings: Settings
    engine: CrossEncoder
    location: ModelLocation
    load_seconds: float
    scorer: Scorer
    authenticator: BearerAuthenticator | None  # AUTH_MODE=bearer


@dataclass(frozen=True)
class Failed:
    """Init could not load the model: the error to answer with, and whether a later request may retry."""

    failure: ModelUnavailable
    retryable: bool = False
    failed_at: float = 0.0
    retry_after_seconds: float = Settings.model_load_retry_seconds  # MODEL_LOAD_RETRY_SECONDS


type Runtime = Ready | Failed


def load(environ: Mapping[str, str] | None = None, clock: Clock = time.monotonic) -> Runtime:
    """Read settings, find and load the model; on failure keep a ModelUnavailable to answer with."""
    started = time.perf_counter()
    settings: Settings | None = None
    try:
        settings = Settings.from_env(environ)
        location = locate_model(settings)
        engine = CrossEncoder.load(location.directory, EngineOptions.from_settings(settings))
    except Exception as exc:  # noqa: BLE001 - any init failure becomes a clean ModelUnavailable
        return _failed(exc, environ, settings, clock)
    seconds = time.perf_counter() - started
    logger.info(
        "model loaded",
        extra={
            "model": engine.name,
            "model_source": location.source,
            "archive_sha256": location.archive_sha256,
            "onnx_sha256": engine.sha256,
            "onnx_bytes": engine.onnx_bytes,
            "quantized": engine.quantized,
            "schedule": engine.schedule,
            "locate_seconds": round(location.seconds, 4),
            "load_seconds": round(seconds, 4),
            "bytes_downloaded": location.bytes_downloaded,
            "download_attempts": location.download_attempts,
        },
    )
    return Ready(
        settings=settings,
        engine=engine,
        location=location,
        load_seconds=seconds,
        scorer=Scorer.from_settings(engine, settings, clock),
        authenticator=build_authenticator(settings),
    )


def build_authenticator(settings: Settings) -> BearerAuthenticator | None:
    """AUTH_MODE=bearer: tokens from the SSM parameter (read on the first request, then cached)."""
    if settings.auth_mode != "bearer" or settings.auth_tokens_parameter is None:
        return None
    return BearerAuthenticator(
        settings.auth_tokens_parameter, max_age_seconds=settings.auth_tokens_max_age_seconds
    )


def _failed(
    exc: Exception, environ: Mapping[str, str] | None, settings: Settings | None, clock: Clock
) -> Failed:
    kind = type(exc).__name__
    if isinstance(exc, RerankerError):
        logger.error("model unavailable: %s", exc.public_message, extra={"error_type": kind})
    else:
        logger.exception("model unavailable: unexpected %s while loading", kind, extra={"error_type": kind})
    failure = ModelUnavailable(
        f"the model is not available ({kind}); the function's init log has the details"
    )
    env = os.environ if environ is None else environ
    if env.get(INITIALIZATION_TYPE) == "snap-start":
        # Fail the version publish: a snapshot of a broken init would answer 503 in every restored copy.
        raise failure from exc
    return Failed(
        failure=failure,
        retryable=isinstance(exc, ModelDownloadFailed),
        failed_at=clock(),
        retry_after_seconds=(settings or Settings()).model_load_retry_seconds,
    )


class ModuleState:
    """The one runtime of this execution environment, how to rebuild it, and the load metric still owed."""

    def __init__(self) -> None:
        self.runtime: Runtime = Failed(ModelUnavailable("the model has not been loaded yet"))
        self.environ: Mapping[str, str] | None = None
        self.clock: Clock = time.monotonic
        self.load_metric_pending = False
        self.warm_up_seconds: float | None = None  # set by warm_up(): the SnapStart before-snapshot hook

    def install(self, runtime: Runtime) -> Runtime:
        self.runtime = runtime
        self.load_metric_pending = isinstance(runtime, Ready)
        return runtime


STATE = ModuleState()


def initialize(environ: Mapping[str, str] | None = None, clock: Clock = time.monotonic) -> None:
    """Build the runtime: settings, model, cache, auth. app.py calls it at import (the Lambda init phase)."""
    STATE.environ, STATE.clock = environ, clock
    STATE.warm_up_seconds = None
    STATE.install(load(environ, clock))


def reset(environ: Mapping[str, str] | None = None, clock: Clock = time.monotonic) -> None:
    """Test hook (like Powertools' reset helpers): rebuild the module state from ``environ``."""
    obs.reset()
    initialize(environ, clock)


def ready() -> Ready:
    """The loaded model, or ModelUnavailable (after one more try if the init failure was transient)."""
    runtime = STATE.runtime
    if (
        isinstance(runtime, Failed)
        and runtime.retryable
        and STATE.clock() - runtime.failed_at >= runtime.retry_after_seconds
    ):
        logger.info("retrying the model load after a transient failure")
        runtime = STATE.install(load(STATE.environ, STATE.clock))
    if isinstance(runtime, Failed):
        raise ModelUnavailable(runtime.failure.public_message)  # a fresh error per request
    return runtime


def authenticate(headers: Mapping[str, str]) -> None:
    """Raise Unauthorized unless the request carries an accepted bearer token (a no-op with AUTH_MODE=none)."""
    runtime = STATE.runtime
    if isinstance(runtime, Ready) and runtime.authenticator is not None:
        runtime.authenticator.authenticate(headers)


def take_load_seconds() -> float | None:
    """The init's model load time, once: EMF is flushed per invocation, so it rides on the first one."""
    runtime = STATE.runtime
    if not STATE.load_metric_pending or not isinstance(runtime, Ready):
        return None
    STATE.load_metric_pending = False
    return runtime.load_seconds


def warm_up() -> float | None:
    """One inference of a fixed tiny pair straight through the engine, so a snapshot holds a run model.

    Not through the Scorer: nothing enters the score cache, no tally, no metric. One batch of copies of the
    pair per parallel run: the first batch runs on the main session, the others in the tail (on the tail
    session, if there is one), so both have run once. None if not Ready.
    """
    runtime = STATE.runtime
    if not isinstance(runtime, Ready):
        return None
    engine = runtime.engine
    started = time.perf_counter()
    per_batch = engine.options.batch_size if engine.schedule == "sorted_batches" else 1
    engine.score(WARM_UP_QUERY, [WARM_UP_PASSAGE] * (max(1, engine.options.parallel_runs) * per_batch))
    if (
        engine.schedule == "exact_batches"
    ):  # the batched graph runs in the probe; the snapshot keeps its costs
        engine.runner.run_costs()
    STATE.warm_up_seconds = time.perf_counter() - started
    logger.info("warm-up inference done", extra={"warm_up_seconds": round(STATE.warm_up_seconds, 4)})
    return STATE.warm_up_seconds


def renew_after_restore() -> None:
    """What a restored copy of the snapshot must not share with the others (snapstart.py's after-restore hook).

    The load metric belongs to the environment that loaded the model at publish time, not to each restore; the
    bearer authenticator (and its SSM client and token cache) is made anew; the score cache, which holds
    nothing unless something was scored before the snapshot, is emptied if it holds anything.
    """
    STATE.load_metric_pending = False
    runtime = STATE.runtime
    if not isinstance(runtime, Ready):
        return
    if runtime.authenticator is not None:
        STATE.runtime = replace(runtime, authenticator=build_authenticator(runtime.settings))
    cache = runtime.scorer.cache
    if len(cache) or cache.hits or cache.misses:  # clear() touches every page of the table: only when needed
        cache.clear()
