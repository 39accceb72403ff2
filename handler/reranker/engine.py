"""Cross-encoder inference: tokenize -> schedule -> ONNX -> scores. A plain library: no AWS, no env vars."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort
from tokenizers import Tokenizer

from reranker.best_of_windows import BestOfWindows
from reranker.config import Schedule, Settings
from reranker.errors import ModelFileInvalid
from reranker.exact_batches import (
    ExactBatchesUnsupported,
    batch_session_options,
    batched_graph,
    session_and_fused_graph,
)
from reranker.model_files import (
    DYNAMIC_QUANTIZATION_OPS,
    check_outputs,
    find_onnx_file,
    is_generated_fixture,
    load_tokenizer,
)
from reranker.onnx_runs import OnnxRunner, resolve_schedule, session_options
from reranker.tokenization import LongDocuments, PairTokenizer, WindowsUnsupported

__all__ = [
    "CrossEncoder",
    "EngineOptions",
    "LongDocuments",
    "ScoreReport",
    "WindowsUnsupported",
]


@dataclass(frozen=True)
class EngineOptions:
    max_length: int = Settings.engine_max_length
    schedule: Schedule = Settings.engine_schedule
    batch_size: int = Settings.engine_batch_size
    exact_batch_max_pairs: int = Settings.engine_exact_batch_max_pairs
    exact_batch_max_tokens: int = Settings.engine_exact_batch_max_tokens
    exact_batch_min_gain_percent: int = Settings.engine_exact_batch_min_gain_percent
    cost_probe_ms: int = Settings.engine_cost_probe_ms
    intra_op_threads: int = Settings.ort_intra_op_threads
    allow_spinning: bool = Settings.ort_allow_spinning
    # Model runs in flight at once, each on its own thread (onnxruntime releases the GIL while it runs).
    parallel_runs: int = Settings.engine_parallel_runs
    # Intra-op threads of the runs that start when fewer are left than parallel_runs (a second session);
    # no more than intra_op_threads: no second session.
    tail_intra_op_threads: int = Settings.engine_tail_intra_op_threads
    long_documents: LongDocuments = Settings.long_documents
    window_max_per_passage: int = Settings.window_max_per_passage
    window_overlap_tokens: int = Settings.window_overlap_tokens
    # int8 models: also load the exact-batch graph (exact_batches.py), for the exact_batches schedule (which
    # "auto" becomes when there is one). The settings ask for it with ENGINE_SCHEDULE=exact_batches only.
    exact_batches: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        """The engine's options as the function's settings say."""
        return cls(
            max_length=settings.engine_max_length,
            schedule=settings.engine_schedule,
            batch_size=settings.engine_batch_size,
            exact_batch_max_pairs=settings.engine_exact_batch_max_pairs,
            exact_batch_max_tokens=settings.engine_exact_batch_max_tokens,
            exact_batch_min_gain_percent=settings.engine_exact_batch_min_gain_percent,
            cost_probe_ms=settings.engine_cost_probe_ms,
            intra_op_threads=settings.ort_intra_op_threads,
            allow_spinning=settings.ort_allow_spinning,
            parallel_runs=settings.engine_parallel_runs,
            tail_intra_op_threads=settings.engine_tail_intra_op_threads,
            long_documents=settings.long_documents,
            window_max_per_passage=settings.window_max_per_passage,
            window_overlap_tokens=settings.window_overlap_tokens,
            exact_batches=settings.engine_schedule == "exact_batches",
        )

    @property
    def tail_threads(self) -> int | None:
        """The tail session's intra-op threads, or None when the tail runs like the rest."""
        if self.parallel_runs > 1 and self.tail_intra_op_threads > self.intra_op_threads:
            return self.tail_intra_op_threads
        return None


@dataclass(frozen=True)
class ScoreReport:
    """Scores in the caller's order; None marks a passage left unscored because should_stop() said so.

    ``logits`` (only when score() was asked for them) are the raw logits in the same order: the model's
    one output, or for two-column models the positive column minus the negative one, so that each score
    is exactly the logistic function of its logit.
    """

    scores: list[float | None]
    tokens: int = 0
    truncated: int = 0
    windows: int = 0
    tokenize_seconds: float = 0.0
    inference_seconds: float = 0.0
    logits: list[float | None] | None = None

    @property
    def complete(self) -> bool:
        return all(score is not None for score in self.scores)


def exact_batch_session(
    fused: bytes, options: EngineOptions
) -> tuple[ort.InferenceSession | None, str | None]:
    """The exact-batch session of an int8 model's fused graph (session_and_fused_graph), or None and why the
    graph cannot have one."""
    try:
        graph = batched_graph(fused)
        settings = batch_session_options(
            session_options(options.intra_op_threads, allow_spinning=options.allow_spinning)
        )
        return ort.InferenceSession(graph, settings, providers=["CPUExecutionProvider"]), None
    except ExactBatchesUnsupported as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001  onnxruntime's untyped errors: a rewritten graph it refuses runs alone
        return None, f"onnxruntime refused the rewritten graph: {type(exc).__name__}"


class CrossEncoder:
    """A FlashRank pairwise model: scores (query, passage) pairs, one passage independent of the others."""

    def __init__(
        self,
        *,
        name: str,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        pad_id: int,
        sha256: str,
        quantized: bool,
        options: EngineOptions,
        onnx_file: str,
        onnx_bytes: int = 0,
        fixture: bool = False,
        tail_session: ort.InferenceSession | None = None,
        batch_session: ort.InferenceSession | None = None,
        exact_batches_refused: str | None = None,
    ) -> None:
        self.name = name
        # Why an int8 model asked for exact batches has none (its pairs then run alone).
        self.exact_batches_refused = exact_batches_refused
        self.fixture = fixture
        self.sha256 = sha256
        self.quantized = quantized
        self.options = options
        self.onnx_file = onnx_file
        self.onnx_bytes = onnx_bytes
        self._max_length = tokenizer.truncation["max_length"] if tokenizer.truncation else options.max_length
        self.tokenization = PairTokenizer(
            tokenizer,
            self._max_length,
            overlap_tokens=options.window_overlap_tokens,
            max_windows=options.window_max_per_passage,
        )
        self.schedule = resolve_schedule(
            options.schedule, quantized=quantized, exact_batches=batch_session is not None
        )
        exact = self.schedule == "exact_batches"
        self.runner = OnnxRunner(
            session,
            pad_id=pad_id,
            schedule=self.schedule,
            batch_size=options.exact_batch_max_pairs if exact else options.batch_size,
            parallel_runs=options.parallel_runs,
            tail_session=tail_session,
            tail_threads=options.tail_threads or options.intra_op_threads,
            batch_session=batch_session,
            exact_batch_max_tokens=min(options.exact_batch_max_tokens, self._max_length),
            exact_batch_min_gain=options.exact_batch_min_gain_percent / 100,
            cost_probe_seconds=options.cost_probe_ms / 1000,
        )
        if "input_ids" not in self.runner.input_names:
            raise ModelFileInvalid(f"model file {onnx_file} has no input_ids input")
        check_outputs(session, onnx_file)

    @classmethod
    def load(cls, model_dir: Path, options: EngineOptions | None = None) -> CrossEncoder:
        options = options or EngineOptions()
        if not model_dir.is_dir():
            raise ModelFileInvalid(f"model directory {model_dir.name} does not exist")
        tokenizer, pad_id = load_tokenizer(model_dir, options.max_length)
        onnx_path = find_onnx_file(model_dir)
        model_bytes = onnx_path.read_bytes()
        quantized = any(op in model_bytes for op in DYNAMIC_QUANTIZATION_OPS)
        thread_counts = [options.intra_op_threads] + ([options.tail_threads] if options.tail_threads else [])
        fused: bytes | None = None
        try:
            sessions = []
            for threads in thread_counts:
                settings = session_options(threads, allow_spinning=options.allow_spinning)
                if options.exact_batches and quantized and fused is None:
                    session, fused = session_and_fused_graph(model_bytes, settings)
                else:
                    session = ort.InferenceSession(model_bytes, settings, providers=["CPUExecutionProvider"])
                sessions.append(session)
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ModelFileInvalid(f"model file {onnx_path.name} is not a loadable ONNX model") from exc
        session, *tail = sessions
        batch_session, refused = exact_batch_session(fused, options) if fused is not None else (None, None)
        return cls(
            name=model_dir.name,
            session=session,
            tokenizer=tokenizer,
            pad_id=pad_id,
            sha256=hashlib.sha256(model_bytes).hexdigest(),
            quantized=quantized,
            options=options,
            onnx_file=onnx_path.name,
            onnx_bytes=len(model_bytes),
            fixture=is_generated_fixture(model_dir),
            tail_session=tail[0] if tail else None,
            batch_session=batch_session,
            exact_batches_refused=refused,
        )

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "onnx_file": self.onnx_file,
            "onnx_bytes": self.onnx_bytes,
            "sha256": self.sha256,
            "quantized": self.quantized,
            "fixture": self.fixture,
            "schedule": self.schedule,
            "run_costs": costs.describe() if (costs := self.runner.measured_costs) else None,
            "max_length": self._max_length,
            "parallel_runs": self.options.parallel_runs,
            "exact_batches": self.runner.batch_session is not None,
            "exact_batches_refused": self.exact_batches_refused,
            "options": asdict(self.options),
        }

    def score(
        self,
        query: str,
        passages: Sequence[str],
        *,
        long_documents: LongDocuments | None = None,
        should_stop: Callable[[], bool] | None = None,
        with_logits: bool = False,
    ) -> ScoreReport:
        """Score every passage against the query; stop early (leaving None) once should_stop() is true.

        ``with_logits``: also report each passage's raw logit (its best window's in window mode).
        """
        if not passages:
            return ScoreReport(scores=[], logits=[] if with_logits else None)
        started = time.perf_counter()
        encoded = self.tokenization.encode(
            query, passages, long_documents or self.options.long_documents, should_stop
        )
        pending, truncated = encoded.runs, encoded.truncated
        tokenize_seconds = time.perf_counter() - started
        # Tokenized first (in deadline-checked chunks), then run: overlapping tokenizing with the workers'
        # runs was measured slower (both cores are already busy).
        best = BestOfWindows(pending, len(passages))
        for batch, batch_logits in self.runner.run(pending, should_stop):
            best.record(batch, batch_logits)
        scores, logits = best.results()
        return ScoreReport(
            scores=scores,
            tokens=sum(len(run.ids) for run in pending),
            truncated=truncated,
            windows=best.windows,
            tokenize_seconds=tokenize_seconds,
            inference_seconds=time.perf_counter() - started - tokenize_seconds,
            logits=logits if with_logits else None,
        )

    @property
    def max_length(self) -> int:
        """The token limit in force: min(the model's model_max_length, options.max_length)."""
        return int(self._max_length)
