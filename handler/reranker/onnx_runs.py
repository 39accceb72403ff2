"""Model runs: encodings into ONNX feeds, grouped as the schedule says, run in order or on worker threads."""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import onnxruntime as ort

from reranker.config import Schedule
from reranker.run_costs import RunCosts, measure_run_costs
from reranker.run_plan import plan_runs
from reranker.tokenization import PairInput

RunSchedule = Literal["single", "sorted_batches", "exact_batches"]
Batch = list[PairInput]
# Runs queued per worker thread: enough to keep it busy, few enough that should_stop() still bites.
IN_FLIGHT_PER_WORKER = 4
# The attention mask of a pair alone is a view of one row of ones this long (longer if a pair is).
MASK_ROW_TOKENS = 512


def session_options(intra_op_threads: int, *, allow_spinning: bool = True) -> ort.SessionOptions:
    """The options of every session: ``intra_op_threads`` threads per run, their workers spinning or not.

    Spinning only concerns the intra-op workers a run of more than one thread has; on a fraction of a vCPU
    (a CPU quota) it would burn the quota the run itself needs, so the settings turn it off there.
    """
    # Measured on one core against these (docs/benchmarks.md): EXTENDED or BASIC graph optimization, no memory
    # pattern, no CPU arena, no thread spinning, OrtValue feeds: none runs a pair faster than this.
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    if not allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def resolve_schedule(schedule: Schedule, *, quantized: bool, exact_batches: bool) -> RunSchedule:
    """The schedule a model runs with: ``auto`` keeps int8 scores exact, and exact batches need a batched graph.

    A padded batch through an int8 graph changes scores (its dynamic quantization scales over the padding), so
    int8 models run each pair alone, or in exact batches where a batched graph proven exact exists
    (``exact_batches``); without one, ``exact_batches`` runs each pair alone too.
    """
    if schedule == "auto":
        if not quantized:
            return "sorted_batches"
        schedule = "exact_batches"
    if schedule == "exact_batches" and not exact_batches:
        return "single"
    return schedule


def request_fits_the_tail(batches: int, parallel_runs: int, tail_threads: int) -> bool:
    """Whether a request of ``batches`` runs can run them all on the tail session at once.

    It can when every run, with the tail's intra-op threads, finds idle vCPUs: batches x tail_threads no more
    than the vCPUs (``parallel_runs``). Measured (docs/benchmarks.md, the tail): a tail run that starts while
    another run still holds its vCPU is slower than one thread, so only such requests use it.
    """
    return batches * tail_threads <= parallel_runs


class OnnxRunner:
    """Runs pairs through one session: each alone ("single"), in length-sorted padded batches, or as planned.

    ``tail_session`` (the same model with ``tail_threads`` intra-op threads), when given, runs every batch of a
    request small enough to leave vCPUs idle (see request_fits_the_tail). With several runs in flight, pairs
    run alone start longest first, so that no long pair starts last while the other workers idle.

    ``batch_session``, when given, is an int8 model's exact-batch graph (exact_batches.py): infer_exact_batch
    runs a padded batch through it, every pair's logits bit for bit those the pair gets alone in ``session``.
    The ``exact_batches`` schedule needs it: pairs of up to ``exact_batch_max_tokens`` tokens run in its
    batches of up to ``batch_size`` pairs where this environment's run costs (measured on the first request
    that could batch) say that is quicker (run_plan.py); the others run alone through ``session``.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        pad_id: int,
        schedule: RunSchedule,
        batch_size: int,
        parallel_runs: int,
        tail_session: ort.InferenceSession | None = None,
        tail_threads: int = 2,
        batch_session: ort.InferenceSession | None = None,
        exact_batch_max_tokens: int = 0,
        exact_batch_min_gain: float = 0.0,
        cost_probe_seconds: float = 0.0,
        costs: RunCosts | None = None,
    ) -> None:
        if schedule == "exact_batches" and batch_session is None:
            raise ValueError(
                "the exact_batches schedule needs a batch session (a batched graph proven exact)"
            )
        self.session = session
        self.tail_session = tail_session
        self._tail_threads = tail_threads
        self.batch_session = batch_session
        self.schedule = schedule
        self.input_names = frozenset(node.name for node in session.get_inputs())
        self._pad_id = pad_id
        self._batch_size = batch_size
        self._parallel_runs = parallel_runs
        self._exact_batch_max_tokens = exact_batch_max_tokens
        self._exact_batch_min_gain = exact_batch_min_gain
        self._cost_probe_seconds = cost_probe_seconds
        self._costs = costs  # None: measured when first needed
        self._costs_lock = threading.Lock()
        self._mask_row = np.ones((1, MASK_ROW_TOKENS), dtype=np.int64)
        # Threads start on first use: init starts none (SnapStart's warm-up may; a snapshot restores them).
        self._pool = (
            ThreadPoolExecutor(parallel_runs, thread_name_prefix="onnx-run") if parallel_runs > 1 else None
        )

    def batches(self, runs: list[PairInput]) -> Iterator[Batch]:
        if self.schedule == "sorted_batches":
            ordered = sorted(runs, key=lambda run: len(run.ids))
            for start in range(0, len(ordered), self._batch_size):
                yield ordered[start : start + self._batch_size]
            return
        lengths = [] if self.schedule == "single" else [len(run.ids) for run in runs]
        if sum(tokens <= self._exact_batch_max_tokens for tokens in lengths) < 2:
            if self._parallel_runs > 1:  # longest first: the makespan of several workers
                runs = sorted(runs, key=lambda run: -len(run.ids))
            for run in runs:
                yield [run]
            return
        plan = plan_runs(
            lengths,
            self.run_costs(),
            max_batch_pairs=self._batch_size,
            parallel_runs=self._parallel_runs,
            min_gain=self._exact_batch_min_gain,
        )
        for planned in plan:
            yield [runs[position] for position in planned.pairs]

    def run_costs(self) -> RunCosts:
        """This environment's run costs, measured the first time they are asked for (exact_batches only).

        Measured at the first request that could batch rather than at load: a model that never sees two short
        pairs at once never pays for it, and the probe's first runs warm the sessions that request uses.
        """
        costs = self._costs
        if costs is not None:
            return costs
        batch_session = self.batch_session
        if batch_session is None or self.schedule != "exact_batches":
            raise ValueError("run costs are only measured for the exact_batches schedule")
        with self._costs_lock:
            if self._costs is None:
                self._costs = measure_run_costs(
                    functools.partial(self._probe, self.session, 1),
                    functools.partial(self._probe, batch_session),
                    self._exact_batch_max_tokens,
                    self._cost_probe_seconds,
                )
            return self._costs

    @property
    def measured_costs(self) -> RunCosts | None:
        """The run costs if they have been measured yet."""
        return self._costs

    def _probe(self, session: ort.InferenceSession, rows: int, tokens: int) -> None:
        """One run of ``rows`` synthetic pairs of ``tokens`` pad ids: its work depends on the shape, not the ids."""
        pair = PairInput(-1, [self._pad_id] * tokens, [0] * tokens)
        session.run(None, self.feed([pair] * rows))

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The session's inputs for one batch (padded to its longest pair when it holds several)."""
        if len(batch) == 1:  # the int8 hot path: no padding, so no fill-and-copy, and the mask is a view
            ids = np.array(batch[0].ids, dtype=np.int64)[np.newaxis]
            type_ids = np.array(batch[0].type_ids, dtype=np.int64)[np.newaxis]
            mask = self._ones(ids.shape[1])
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
        if "attention_mask" in self.input_names:
            feed["attention_mask"] = mask
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = type_ids
        return feed

    def _ones(self, length: int) -> np.ndarray:
        """A (1, length) attention mask of ones: a view of one array, grown when a pair is longer."""
        if length > self._mask_row.shape[1]:
            self._mask_row = np.ones((1, length), dtype=np.int64)
        return self._mask_row[:, :length]

    def infer(self, batch: Batch, session: ort.InferenceSession | None = None) -> np.ndarray:
        """The batch's logits through ``session`` (default: the per-pair session), padded if it holds several."""
        return np.asarray((session or self.session).run(None, self.feed(batch))[0])

    def infer_exact_batch(self, batch: Batch) -> np.ndarray:
        """The logits of ``batch`` run as one padded batch through batch_session: one row per pair, each
        equal bit for bit to the row the pair gets alone through ``session``."""
        if self.batch_session is None:
            raise RuntimeError(
                "this model has no exact-batch session (int8 models loaded with exact_batches)"
            )
        return np.asarray(self.batch_session.run(None, self.feed(batch))[0])

    def session_of(self, batch: Batch, batches: int) -> ort.InferenceSession:
        """The session a planned batch of a request of ``batches`` runs on: an exact batch of several pairs on
        the batch session, the others as session_for says."""
        if self.schedule == "exact_batches" and len(batch) > 1 and self.batch_session is not None:
            return self.batch_session
        return self.session_for(batches)

    def session_for(self, batches: int) -> ort.InferenceSession:
        """The session of the runs of a request of ``batches`` runs: the tail session if they all fit it."""
        if self.tail_session is not None and request_fits_the_tail(
            batches, self._parallel_runs, self._tail_threads
        ):
            return self.tail_session
        return self.session

    def run(
        self, runs: list[PairInput], should_stop: Callable[[], bool] | None = None
    ) -> Iterator[tuple[Batch, np.ndarray]]:
        """Each batch with its logits, until should_stop() says stop; runs already in flight then still finish."""
        in_flight: deque[tuple[Batch, Future[np.ndarray]]] = deque()
        batches = list(self.batches(runs))
        for batch in batches:
            if should_stop is not None and should_stop():
                break
            session = self.session_of(batch, len(batches))
            if self._pool is None:
                yield batch, self.infer(batch, session)
                continue
            in_flight.append((batch, self._pool.submit(self.infer, batch, session)))
            if len(in_flight) >= IN_FLIGHT_PER_WORKER * self._parallel_runs:
                done, future = in_flight.popleft()
                yield done, future.result()
        for batch, future in in_flight:
            yield batch, future.result()
