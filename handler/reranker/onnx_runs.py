"""Model runs: encodings into ONNX feeds, grouped as the schedule says, run in order or on worker threads."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import onnxruntime as ort

from reranker.tokenization import PairInput

Schedule = Literal["auto", "single", "sorted_batches"]
Batch = list[PairInput]
# Runs queued per worker thread: enough to keep it busy, few enough that should_stop() still bites.
IN_FLIGHT_PER_WORKER = 4


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


def runs_in_the_tail(left_to_start: int, parallel_runs: int) -> bool:
    """Whether a run that starts with ``left_to_start`` runs not yet started (itself included) is in the tail.

    Runs start in order, one per free worker, so from there on fewer runs are left than workers: the
    workers that find nothing more to start leave vCPUs idle, which the tail's intra-op threads can use.
    """
    return left_to_start < parallel_runs


class OnnxRunner:
    """Runs pairs through one session: each alone ("single") or in length-sorted padded batches.

    ``tail_session`` (the same model with more intra-op threads), when given, runs the request's tail: each
    batch that starts when fewer batches are left than ``parallel_runs`` (see runs_in_the_tail).
    ``batch_session``, when given, is an int8 model's exact-batch graph (exact_batches.py): infer_exact_batch
    runs a padded batch through it, every pair's logits bit for bit those the pair gets alone in ``session``.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        pad_id: int,
        schedule: Literal["single", "sorted_batches"],
        batch_size: int,
        parallel_runs: int,
        tail_session: ort.InferenceSession | None = None,
        batch_session: ort.InferenceSession | None = None,
    ) -> None:
        self.session = session
        self.tail_session = tail_session
        self.batch_session = batch_session
        self.schedule = schedule
        self.input_names = frozenset(node.name for node in session.get_inputs())
        self._pad_id = pad_id
        self._batch_size = batch_size
        self._parallel_runs = parallel_runs
        # Threads start on first use: init starts none (SnapStart's warm-up may; a snapshot restores them).
        self._pool = (
            ThreadPoolExecutor(parallel_runs, thread_name_prefix="onnx-run") if parallel_runs > 1 else None
        )

    def batches(self, runs: list[PairInput]) -> Iterator[Batch]:
        if self.schedule == "single":
            for run in runs:
                yield [run]
            return
        ordered = sorted(runs, key=lambda run: len(run.ids))
        for start in range(0, len(ordered), self._batch_size):
            yield ordered[start : start + self._batch_size]

    def feed(self, batch: Batch) -> dict[str, np.ndarray]:
        """The session's inputs for one batch (padded to its longest pair when it holds several)."""
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
        if "attention_mask" in self.input_names:
            feed["attention_mask"] = mask
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = type_ids
        return feed

    def infer(self, batch: Batch, session: ort.InferenceSession | None = None) -> np.ndarray:
        return np.asarray((session or self.session).run(None, self.feed(batch))[0])

    def infer_exact_batch(self, batch: Batch) -> np.ndarray:
        """The logits of ``batch`` run as one padded batch through batch_session: one row per pair, each
        equal bit for bit to the row the pair gets alone through ``session``."""
        if self.batch_session is None:
            raise RuntimeError(
                "this model has no exact-batch session (int8 models loaded with exact_batches)"
            )
        return np.asarray(self.batch_session.run(None, self.feed(batch))[0])

    def session_for(self, left_to_start: int) -> ort.InferenceSession:
        """The session of a batch that starts with ``left_to_start`` batches not yet started (itself included)."""
        if self.tail_session is not None and runs_in_the_tail(left_to_start, self._parallel_runs):
            return self.tail_session
        return self.session

    def run(
        self, runs: list[PairInput], should_stop: Callable[[], bool] | None = None
    ) -> Iterator[tuple[Batch, np.ndarray]]:
        """Each batch with its logits, until should_stop() says stop; runs already in flight then still finish."""
        in_flight: deque[tuple[Batch, Future[np.ndarray]]] = deque()
        batches = list(self.batches(runs))
        for index, batch in enumerate(batches):
            if should_stop is not None and should_stop():
                break
            if self._pool is None:
                yield batch, self.infer(batch)
                continue
            # The pool starts batches in the order they are submitted, so this one starts with the batches
            # from it to the end not yet started.
            session = self.session_for(len(batches) - index)
            in_flight.append((batch, self._pool.submit(self.infer, batch, session)))
            if len(in_flight) >= IN_FLIGHT_PER_WORKER * self._parallel_runs:
                done, future = in_flight.popleft()
                yield done, future.result()
        for batch, future in in_flight:
            yield batch, future.result()
