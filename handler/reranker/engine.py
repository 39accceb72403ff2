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
from tokenizers import AddedToken, Encoding, Tokenizer

from reranker.errors import ModelFileInvalid

Schedule = Literal["auto", "single", "sorted_batches"]
LongDocuments = Literal["truncate", "window"]

# FlashRank's names for the ONNX file of each published pairwise model.
FLASHRANK_ONNX_FILES = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
}
REQUIRED_JSON_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")
# Operators that dynamic int8 quantization inserts; their activation scale spans the whole batch tensor.
DYNAMIC_QUANTIZATION_OPS = (b"DynamicQuantizeLinear", b"MatMulInteger", b"DynamicQuantizeMatMul")
# A passage longer than this many characters per token of the limit is cut at a space before tokenizing (only
# when that provably keeps the same tokens, see CrossEncoder._encode): at most 512 tokens of it are ever used.
PRECUT_CHARS_PER_TOKEN = 12
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
    """Scores in the caller's order; None marks a passage left unscored because should_stop() said so."""

    scores: list[float | None]
    tokens: int = 0
    truncated: int = 0
    windows: int = 0
    tokenize_seconds: float = 0.0
    inference_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return all(score is not None for score in self.scores)


@dataclass
class _Pending:
    """One model run to make: a (query, passage or window) encoding and the passage it scores."""

    passage: int
    ids: list[int]
    type_ids: list[int]


@dataclass
class _Accumulator:
    scores: list[float | None]
    windows: int = 0
    best: dict[int, float] = field(default_factory=dict)
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


def logits_to_scores(logits: np.ndarray) -> np.ndarray:
    """FlashRank's mapping: sigmoid of a single logit, softmax column 1 of two; overflow-free."""
    if logits.ndim != 2 or logits.shape[1] not in (1, 2):
        raise ValueError(f"expected logits of shape (batch, 1) or (batch, 2), got {logits.shape}")
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


def find_onnx_file(model_dir: Path) -> Path:
    """FlashRank's file name for known models; otherwise the directory's only .onnx file."""
    known = FLASHRANK_ONNX_FILES.get(model_dir.name)
    if known is not None and (model_dir / known).is_file():
        return model_dir / known
    candidates = sorted(model_dir.glob("*.onnx"))
    if len(candidates) == 1:
        return candidates[0]
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


def precut_limit(tokenizer: Tokenizer, max_length: int) -> int | None:
    """Characters of a passage worth tokenizing, or None when cutting text could change the kept tokens.

    With BERT's normalizer (per character), pre-tokenizer (splits at whitespace) and WordPiece (per word),
    the tokens of text cut at a space are a prefix of the tokens of the whole text.
    """
    pipeline = (type(tokenizer.normalizer).__name__, type(tokenizer.pre_tokenizer).__name__)
    if pipeline != ("BertNormalizer", "BertPreTokenizer") or type(tokenizer.model).__name__ != "WordPiece":
        return None
    if any(" " in token.content for token in tokenizer.get_added_tokens_decoder().values()):
        return None
    return max_length * PRECUT_CHARS_PER_TOKEN


def window_geometry(query_tokens: int, max_length: int, overlap_tokens: int) -> tuple[int, int]:
    """(room, step): passage tokens per window beside the query ([CLS] q [SEP] w [SEP]), and the stride.

    The query keeps at most half the limit; neighbouring windows share up to ``overlap_tokens``.
    """
    room = max_length - min(query_tokens, max_length // 2) - 3
    return room, max(1, room - min(overlap_tokens, room // 2))


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
    ) -> None:
        self.name = name
        self.sha256 = sha256
        self.quantized = quantized
        self.options = options
        self.onnx_file = onnx_file
        self.onnx_bytes = onnx_bytes
        self._session = session
        self._tokenizer = tokenizer
        self._pad_id = pad_id
        self._whole_passage_tokenizer: Tokenizer | None = None
        # Threads start on first use, so a SnapStart snapshot of init holds none.
        self._pool = (
            ThreadPoolExecutor(options.parallel_runs, thread_name_prefix="onnx-run")
            if options.parallel_runs > 1
            else None
        )
        self._input_names = frozenset(node.name for node in session.get_inputs())
        self._max_length = tokenizer.truncation["max_length"] if tokenizer.truncation else options.max_length
        self._precut_chars = precut_limit(tokenizer, self._max_length)
        # int8 models must run each pair alone: grouping makes a score depend on its batch neighbours.
        if options.schedule == "auto":
            self.schedule: Schedule = "single" if quantized else "sorted_batches"
        else:
            self.schedule = options.schedule
        if "input_ids" not in self._input_names:
            raise ModelFileInvalid(f"model file {onnx_file} has no input_ids input")

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
        )

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "onnx_file": self.onnx_file,
            "onnx_bytes": self.onnx_bytes,
            "sha256": self.sha256,
            "quantized": self.quantized,
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
    ) -> ScoreReport:
        """Score every passage against the query; stop early (leaving None) once should_stop() is true."""
        if not passages:
            return ScoreReport(scores=[])
        started = time.perf_counter()
        pending, truncated = self._encode(query, passages, long_documents or self.options.long_documents)
        tokenize_seconds = time.perf_counter() - started
        # Tokenizing in chunks while workers run the previous chunk was measured slower (both cores are
        # already busy): tokenize once, in parallel, then run.
        accumulator = _Accumulator(scores=[None] * len(passages))
        in_flight: deque[tuple[list[_Pending], Future[np.ndarray]]] = deque()
        self._run(pending, accumulator, in_flight, should_stop)
        for batch, future in in_flight:
            self._record(batch, future.result(), accumulator)
        runs_needed: dict[int, int] = {}
        for run in pending:
            runs_needed[run.passage] = runs_needed.get(run.passage, 0) + 1
        for passage, best in accumulator.best.items():
            # A passage whose windows were only partly scored gets no partial maximum.
            if accumulator.runs_scored[passage] == runs_needed[passage]:
                accumulator.scores[passage] = best
        return ScoreReport(
            scores=accumulator.scores,
            tokens=sum(len(run.ids) for run in pending),
            truncated=truncated,
            windows=accumulator.windows,
            tokenize_seconds=tokenize_seconds,
            inference_seconds=time.perf_counter() - started - tokenize_seconds,
        )

    def _encode(self, query: str, passages: Sequence[str], mode: LongDocuments) -> tuple[list[_Pending], int]:
        """The model runs to make, and how many passages do not fit in them whole."""
        encodings = self._encode_pairs(query, passages)
        pending = [
            _Pending(index, encoding.ids, encoding.type_ids) for index, encoding in enumerate(encodings)
        ]
        overflowing = [index for index, encoding in enumerate(encodings) if encoding.overflowing]
        if mode == "truncate" or not overflowing:
            return pending, len(overflowing)
        window_runs, cut = self._windows(query, [passages[index] for index in overflowing], overflowing)
        long_passages = set(overflowing)
        return [run for run in pending if run.passage not in long_passages] + window_runs, cut

    def _encode_pairs(self, query: str, passages: Sequence[str]) -> list[Encoding]:
        """Truncated (query, passage) encodings; very long passages are cut first when that cannot matter.

        Truncation keeps the query whole and the first (limit - query) passage tokens whenever the query is
        under half the limit, so a cut passage that still overflows yields exactly the tokens of the whole
        passage. Cuts that do not overflow, or come with a long query, are encoded again from the whole text.
        """
        texts = list(passages)
        cut: list[int] = []
        if self._precut_chars is not None:
            for index, text in enumerate(texts):
                space = text.rfind(" ", 0, self._precut_chars) if len(text) > self._precut_chars else -1
                if space > 0:
                    texts[index] = text[:space]
                    cut.append(index)
        # _fast: no character offsets (we never map tokens back to text); same ids, about 15 % quicker.
        encodings = self._tokenizer.encode_batch_fast([(query, text) for text in texts])
        half = (self._max_length - 3) // 2  # [CLS] query [SEP] passage [SEP]
        redo = [
            index
            for index in cut
            if not encodings[index].overflowing or encodings[index].type_ids.count(0) - 2 >= half
        ]
        if redo:
            again = self._tokenizer.encode_batch_fast([(query, passages[index]) for index in redo])
            for index, encoding in zip(redo, again, strict=True):
                encodings[index] = encoding
        return encodings

    def _windows(self, query: str, passages: list[str], indices: list[int]) -> tuple[list[_Pending], int]:
        """Overlapping windows of each long passage that fit beside the query; returns runs and cut count."""
        options = self.options
        query_ids = self._tokenizer.encode(query, add_special_tokens=False).ids[: self._max_length // 2]
        cls_id, sep_id = self._special_id("[CLS]"), self._special_id("[SEP]")
        room, step = window_geometry(len(query_ids), self._max_length, options.window_overlap_tokens)
        runs: list[_Pending] = []
        cut = 0
        passage_encodings = self.passage_tokenizer().encode_batch_fast(passages, add_special_tokens=False)
        head = [cls_id, *query_ids, sep_id]
        for index, encoding in zip(indices, passage_encodings, strict=True):
            tokens = encoding.ids
            starts = list(range(0, max(1, len(tokens) - room + step), step))
            if len(starts) > options.window_max_per_passage:
                starts = starts[: options.window_max_per_passage]
                cut += 1
            for start in starts:
                window = tokens[start : start + room]
                ids = [*head, *window, sep_id]
                runs.append(_Pending(index, ids, [0] * len(head) + [1] * (len(window) + 1)))
        return runs, cut

    @property
    def max_length(self) -> int:
        """The token limit in force: min(the model's model_max_length, options.max_length)."""
        return int(self._max_length)

    def passage_tokenizer(self) -> Tokenizer:
        """A copy of the tokenizer that keeps every token of a passage, made the first time it is needed."""
        if self._whole_passage_tokenizer is None:
            copy = Tokenizer.from_str(self._tokenizer.to_str())
            copy.no_truncation()
            self._whole_passage_tokenizer = copy
        return self._whole_passage_tokenizer

    def _special_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ModelFileInvalid(f"tokenizer.json has no {token} token, needed for windowed scoring")
        return token_id

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
        scores = (
            [sigmoid(float(logits[0, 0]))] if logits.shape == (1, 1) else logits_to_scores(logits).tolist()
        )
        for run, value in zip(batch, scores, strict=True):
            previous = accumulator.best.get(run.passage)
            accumulator.best[run.passage] = value if previous is None else max(previous, value)
            accumulator.runs_scored[run.passage] = accumulator.runs_scored.get(run.passage, 0) + 1
        accumulator.windows += len(batch)
