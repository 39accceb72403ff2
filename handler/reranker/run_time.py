"""How long this environment's model runs take per token, measured on the runs themselves."""

from __future__ import annotations

import threading


class RunTime:
    """Seconds per token of recent model runs: each run's weight halves every ``half_life`` runs, so a changed
    load shows within a few requests. None until ``min_tokens`` tokens have been run (the first request's
    runs, for any but the tiniest). Safe to observe from several worker threads at once."""

    def __init__(self, *, half_life: int = 64, min_tokens: int = 512) -> None:
        self._keep = 0.5 ** (1 / half_life)
        self._min_tokens = min_tokens
        self._seconds = 0.0
        self._tokens = 0.0
        self._seen = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float, tokens: int) -> None:
        """Count one run of ``tokens`` tokens (padding included) that took ``seconds``."""
        if tokens <= 0 or seconds <= 0:
            return
        with self._lock:
            self._seconds = self._seconds * self._keep + seconds
            self._tokens = self._tokens * self._keep + tokens
            self._seen += tokens

    def seconds_per_token(self) -> float | None:
        with self._lock:
            return self._seconds / self._tokens if self._seen >= self._min_tokens else None
