"""Cross-encoder inference: tokenize -> schedule -> ONNX -> scores. A plain library: no AWS, no env vars."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from tokenizers import AddedToken, Tokenizer

from reranker.errors import ModelFileInvalid
from reranker.tokenization import LongDocuments, PairInput, PairTokenizer, WindowsUnsupported

Schedule = Literal["auto", "single", "sorted_batches"]
__all__ = [
    "CrossEncoder",
    "EngineOptions",
    "LongDocuments",
    "ScoreReport",
    "WindowsUnsupported",
    "logits_to_scores",
]

# FlashRank 0.2.10's model_file_map: the ONNX file FlashRank opens for each published pairwise model.
FLASHRANK_ONNX_FILES = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "rank-T5-flan": "flashrank-rankt5_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
    "miniReranker_arabic_v1": "miniReranker_arabic_v1.onnx",
}
REQUIRED_JSON_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")
# Operators that dynamic int8 quantization inserts; their activation scale spans the whole batch tensor.
DYNAMIC_QUANTIZATION_OPS = (b"DynamicQuantizeLinear", b"MatMulInteger", b"DynamicQuantizeMatMul")
# Output element types whose values logits_to_scores can read.
SCORABLE_OUTPUT_TYPES = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})
# tools/fixture_model marks each model it generates in its config.json: random weights, scores that mean nothing.
FIXTURE_CONFIG_KEY = "lambda_reranker_fixture"
# Runs queued per worker thread: enough to keep it busy, few enough that should_stop() still bites.
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class EngineOptions:
    max_length: int = 512
    schedule: Schedule = "auto"
    batch_size: int = 8
    intra_op_threads: int = 1
    # Model runs in flight at once, each on its own thread (onnxruntime releases the GIL while it runs).
    parallel_runs: int = 1
    long_documents: LongDocuments = "truncate"
    window_max_per_passage: int = 8
    window_overlap_tokens: int = 64


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


_Pending = PairInput  # one model run to make: a (query, passage or window) encoding and its passage


@dataclass
class _Accumulator:
    scores: list[float | None]
    windows: int = 0
    best: dict[int, float] = field(default_factory=dict)
    best_logit: dict[int, float] = field(default_factory=dict)
    runs_scored: dict[int, int] = field(default_factory=dict)


def sigmoid(logit: float) -> float:
    """Overflow-free logistic function of one logit, identical to stable_sigmoid's element."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp_logit = math.exp(logit)
    return exp_logit / (1.0 + exp_logit)


def stable_sigmoid(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    positive = values >= 0
    exp_negative = np.exp(-np.abs(values))
    return np.where(positive, 1.0 / (1.0 + exp_negative), exp_negative / (1.0 + exp_negative))


def stable_softmax_positive(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    result: np.ndarray = shifted[:, 1] / shifted.sum(axis=1)
    return result


def raw_logits(logits: np.ndarray) -> np.ndarray:
    """One raw logit per row whose logistic function is the row's score (see logits_to_scores)."""
    values = logits.astype(np.float64)
    return values[:, 0] if values.shape[1] == 1 else values[:, 1] - values[:, 0]


def logits_to_scores(logits: np.ndarray) -> np.ndarray:
    """FlashRank's mapping: sigmoid of a single logit, else softmax column 1 over all columns; overflow-free."""
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"expected logits of shape (batch, columns >= 1), got {logits.shape}")
    return stable_sigmoid(logits[:, 0]) if logits.shape[1] == 1 else stable_softmax_positive(logits)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFileInvalid(f"model file {path.name} is missing from {path.parent.name}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileInvalid(f"model file {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ModelFileInvalid(f"model file {path.name} must hold a JSON object")
    return loaded


def is_generated_fixture(model_dir: Path) -> bool:
    """True for a model tools/fixture_model generated (its config.json says so), never guessed from the name."""
    try:
        return _read_json(model_dir / "config.json").get(FIXTURE_CONFIG_KEY) is True
    except ModelFileInvalid:
        return False


def find_onnx_file(model_dir: Path) -> Path:
    """The file FlashRank opens: its name for the folder's model, else any FlashRank name present, else the
    folder's only .onnx file (FlashRank's folders may hold an fp32 file beside the _Q file it opens)."""
    known = FLASHRANK_ONNX_FILES.get(model_dir.name)
    if known is not None and (model_dir / known).is_file():
        return model_dir / known
    candidates = sorted(model_dir.glob("*.onnx"))
    if len(candidates) == 1:
        return candidates[0]
    named = [path for path in candidates if path.name in FLASHRANK_ONNX_FILES.values()]
    if known is None and len(named) == 1:
        return named[0]
    expected = known or "<one>.onnx"
    found = ", ".join(path.name for path in candidates) or "none"
    raise ModelFileInvalid(
        f"model file {expected} is missing from {model_dir.name} (onnx files found: {found})"
    )


def load_tokenizer(model_dir: Path, max_length: int) -> tuple[Tokenizer, int]:
    """The tokenizer configured as FlashRank configures it; returns it with the pad id from config.json."""
    config = _read_json(model_dir / "config.json")
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
    special_tokens = _read_json(model_dir / "special_tokens_map.json")
    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception as exc:  # the tokenizers library raises bare Exception on bad files
        if not (model_dir / "tokenizer.json").is_file():
            raise ModelFileInvalid(f"model file tokenizer.json is missing from {model_dir.name}") from exc
        raise ModelFileInvalid(f"model file tokenizer.json could not be loaded: {exc}") from exc
    model_max_length = tokenizer_config.get("model_max_length", max_length)
    pad_id = config.get("pad_token_id", 0)
    if not isinstance(model_max_length, int | float) or not isinstance(pad_id, int):
        raise ModelFileInvalid(
            "model files tokenizer_config.json / config.json have non-numeric lengths or ids"
        )
    tokenizer.enable_truncation(max_length=int(min(model_max_length, max_length)))
    tokenizer.no_padding()
    for token in special_tokens.values():
        if isinstance(token, str):
            tokenizer.add_special_tokens([token])
        elif isinstance(token, dict):
            tokenizer.add_special_tokens([AddedToken(**token)])
    return tokenizer, pad_id


def check_outputs(session: ort.InferenceSession, onnx_file: str) -> None:
    """Refuse at load a graph whose first output is not (batch, columns >= 1) floats: never fail per request."""
    outputs = session.get_outputs()
    if not outputs:
        raise ModelFileInvalid(f"model file {onnx_file} has no outputs")
    logits = outputs[0]
    shape = logits.shape
    if logits.type not in SCORABLE_OUTPUT_TYPES:
        raise ModelFileInvalid(
            f"model file {onnx_file}: output {logits.name} is {logits.type}, not float logits"
        )
    if shape is not None and len(shape) != 2:
        raise ModelFileInvalid(
            f"model file {onnx_file}: output {logits.name} has shape {shape}; expected (batch, columns)"
        )
    columns = shape[1] if shape is not None else None
    if not isinstance(columns, int):  # symbolic or unknown: ask the graph itself
        feed = {
            node.name: np.zeros((1, 2), dtype=np.int64)
            for node in session.get_inputs()
            if node.name in ("input_ids", "attention_mask", "token_type_ids")
        }
        if "attention_mask" in feed:
            feed["attention_mask"][:] = 1
        try:
            probe = np.asarray(session.run([logits.name], feed)[0])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFileInvalid(f"model file {onnx_file} fails on a two-token probe input: {exc}") from exc
        if probe.ndim != 2:
            raise ModelFileInvalid(
                f"model file {onnx_file}: output {logits.name} has shape {probe.shape}; expected (batch, columns)"
            )
        columns = probe.shape[1]
    if columns < 1:
        raise ModelFileInvalid(f"model file {onnx_file}: output {logits.name} has no columns to score")


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    # Measured on one core against these (README, Benchmarks): EXTENDED or BASIC graph optimization, no memory
    # pattern, no CPU arena, no thread spinning, OrtValue feeds: none runs a pair faster than this.
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


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
    ) -> None:
        self.name = name
        self.fixture = fixture
        self.sha256 = sha256
        self.quantized = quantized
        self.options = options
        self.onnx_file = onnx_file
        self.onnx_bytes = onnx_bytes
        self._session = session
        self._pad_id = pad_id
        # Threads start on first use, so a SnapStart snapshot of init holds none.
        self._pool = (
            ThreadPoolExecutor(options.parallel_runs, thread_name_prefix="onnx-run")
            if options.parallel_runs > 1
            else None
        )
        self._input_names = frozenset(node.name for node in session.get_inputs())
        self._max_length = tokenizer.truncation["max_length"] if tokenizer.truncation else options.max_length
        self.tokenization = PairTokenizer(
            tokenizer,
            self._max_length,
            overlap_tokens=options.window_overlap_tokens,
            max_windows=options.window_max_per_passage,
        )
        # int8 models must run each pair alone: grouping makes a score depend on its batch neighbours.
        if options.schedule == "auto":
            self.schedule: Schedule = "single" if quantized else "sorted_batches"
        else:
            self.schedule = options.schedule
        if "input_ids" not in self._input_names:
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
        try:
            session = ort.InferenceSession(
                model_bytes, session_options(options.intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ModelFileInvalid(f"model file {onnx_path.name} is not a loadable ONNX model") from exc
        return cls(
            name=model_dir.name,
            session=session,
            tokenizer=tokenizer,
            pad_id=pad_id,
            sha256=hashlib.sha256(model_bytes).hexdigest(),
            quantized=any(op in model_bytes for op in DYNAMIC_QUANTIZATION_OPS),
            options=options,
            onnx_file=onnx_path.name,
            onnx_bytes=len(model_bytes),
            fixture=is_generated_fixture(model_dir),
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
            "max_length": self._max_length,
            "parallel_runs": self.options.parallel_runs,
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
        accumulator = _Accumulator(scores=[None] * len(passages))
        in_flight: deque[tuple[list[_Pending], Future[np.ndarray]]] = deque()
        self._run(pending, accumulator, in_flight, should_stop)
        for batch, future in in_flight:
            self._record(batch, future.result(), accumulator)
        runs_needed: dict[int, int] = {}
        for run in pending:
            runs_needed[run.passage] = runs_needed.get(run.passage, 0) + 1
        logits: list[float | None] = [None] * len(passages)
        for passage, best in accumulator.best.items():
            # A passage whose windows were only partly scored gets no partial maximum.
            if accumulator.runs_scored[passage] == runs_needed[passage]:
                accumulator.scores[passage] = best
                logits[passage] = accumulator.best_logit[passage]
        return ScoreReport(
            scores=accumulator.scores,
            tokens=sum(len(run.ids) for run in pending),
            truncated=truncated,
            windows=accumulator.windows,
            tokenize_seconds=tokenize_seconds,
            inference_seconds=time.perf_counter() - started - tokenize_seconds,
            logits=logits if with_logits else None,
        )

    @property
    def max_length(self) -> int:
        """The token limit in force: min(the model's model_max_length, options.max_length)."""
        return int(self._max_length)

    def _encode(self, query: str, passages: Sequence[str], mode: LongDocuments) -> tuple[list[_Pending], int]:
        """The model runs to make and how many passages do not fit them whole (bench.run's lower bound)."""
        encoded = self.tokenization.encode(query, passages, mode)
        return encoded.runs, encoded.truncated

    def _batches(self, pending: list[_Pending]) -> Iterator[list[_Pending]]:
        if self.schedule == "single":
            for run in pending:
                yield [run]
            return
        ordered = sorted(pending, key=lambda run: len(run.ids))
        size = self.options.batch_size
        for start in range(0, len(ordered), size):
            yield ordered[start : start + size]

    def _feed(self, batch: list[_Pending]) -> dict[str, np.ndarray]:
        if len(batch) == 1:  # the int8 hot path: no padding, so no fill-and-copy
            ids = np.array([batch[0].ids], dtype=np.int64)
            type_ids = np.array([batch[0].type_ids], dtype=np.int64)
            mask = np.ones_like(ids)
        else:
            longest = max(len(run.ids) for run in batch)
            ids = np.full((len(batch), longest), self._pad_id, dtype=np.int64)
            type_ids = np.zeros((len(batch), longest), dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            for row, run in enumerate(batch):
                length = len(run.ids)
                ids[row, :length] = run.ids
                type_ids[row, :length] = run.type_ids
                mask[row, :length] = 1
        feed = {"input_ids": ids}
        if "attention_mask" in self._input_names:
            feed["attention_mask"] = mask
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = type_ids
        return feed

    def _infer(self, batch: list[_Pending]) -> np.ndarray:
        return np.asarray(self._session.run(None, self._feed(batch))[0])

    def _run(
        self,
        pending: list[_Pending],
        accumulator: _Accumulator,
        in_flight: deque[tuple[list[_Pending], Future[np.ndarray]]],
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Run (or hand to the workers) every batch of pending, until should_stop() says stop."""
        for batch in self._batches(pending):
            if should_stop is not None and should_stop():
                return
            if self._pool is None:
                self._record(batch, self._infer(batch), accumulator)
                continue
            in_flight.append((batch, self._pool.submit(self._infer, batch)))
            if len(in_flight) >= IN_FLIGHT_PER_WORKER * self.options.parallel_runs:
                done, future = in_flight.popleft()
                self._record(done, future.result(), accumulator)

    @staticmethod
    def _record(batch: list[_Pending], logits: np.ndarray, accumulator: _Accumulator) -> None:
        # One pair, one logit (the int8 hot path): plain floats beat five numpy calls on a 1x1 array.
        if logits.shape == (1, 1):
            raw = [float(logits[0, 0])]
            scores = [sigmoid(raw[0])]
        else:
            raw = raw_logits(logits).tolist()
            scores = logits_to_scores(logits).tolist()
        for run, value, logit in zip(batch, scores, raw, strict=True):
            previous = accumulator.best.get(run.passage)
            accumulator.best[run.passage] = value if previous is None else max(previous, value)
            # The logistic function is monotonic: the best window's logit is the largest logit.
            previous_logit = accumulator.best_logit.get(run.passage)
            accumulator.best_logit[run.passage] = (
                logit if previous_logit is None else max(previous_logit, logit)
            )
            accumulator.runs_scored[run.passage] = accumulator.runs_scored.get(run.passage, 0) + 1
        accumulator.windows += len(batch)
