"""The median wall time of an action, for the tools that time the engine (engine_overhead, exact_batch_speed)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """The median of ``repeats`` timed calls of ``action``, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
