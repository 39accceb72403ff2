"""A bounded LRU of (query, passage) scores for one warm environment; exact because scores are batch-invariant."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from reranker.engine import CrossEncoder, LongDocuments, ScoreReport

# What one entry costs, measured with tracemalloc on CPython 3.13 (OrderedDict slot + 16-byte key bytes
# object + float): ~180 bytes; rounded up so SCORE_CACHE_MB is an upper bound, not an estimate.
ENTRY_BYTES = 192
KEY_BYTES = 16
# Each field is length-prefixed, so no text (whatever separator it holds) can make two keys collide.
_LENGTH_BYTES = 8


def _field(value: str) -> bytes:
    encoded = value.encode("utf-8", "surrogatepass")
    return len(encoded).to_bytes(_LENGTH_BYTES, "big") + encoded


@dataclass(frozen=True)
class CacheLookup:
    """Cached scores in the caller's order (None = miss) and the keys to fill the misses with."""

    scores: list[float | None]
    keys: list[bytes]

    @property
    def misses(self) -> list[int]:
        return [index for index, score in enumerate(self.scores) if score is None]

    @property
    def hits(self) -> int:
        return len(self.scores) - len(self.misses)


class ScoreCache:
    """LRU map from hash(model, scoring options, query, passage) to score, bounded by a byte budget.

    Keys are blake2b digests, so passage text is never kept in memory longer than the request. Not
    thread-safe: one Lambda environment serves one invocation at a time.
    """

    def __init__(self, max_bytes: int, *, entry_bytes: int = ENTRY_BYTES) -> None:
        self.capacity = max(0, max_bytes // entry_bytes)
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @classmethod
    def from_megabytes(cls, megabytes: float) -> ScoreCache:
        return cls(int(megabytes * 1024 * 1024))

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def namespace(model_sha256: str, mode: LongDocuments, *options: object) -> bytes:
        """The part of every key that depends on the deployment and request options, not the texts."""
        parts = [model_sha256, mode, *(str(option) for option in options)]
        return b"".join(_field(part) for part in parts)

    @staticmethod
    def key(namespace: bytes, query: str, passage: str) -> bytes:
        digest = hashlib.blake2b(namespace, digest_size=KEY_BYTES)
        digest.update(_field(query))
        digest.update(_field(passage))
        return digest.digest()

    def lookup(self, namespace: bytes, query: str, passages: Sequence[str]) -> CacheLookup:
        """Hashes every passage (even when disabled, so callers stay simple) and reads the hits."""
        if not self.enabled:
            return CacheLookup(scores=[None] * len(passages), keys=[])
        keys = [self.key(namespace, query, passage) for passage in passages]
        scores: list[float | None] = []
        for key in keys:
            score = self._entries.get(key)
            if score is not None:
                self._entries.move_to_end(key)
            scores.append(score)
        found = sum(1 for score in scores if score is not None)
        self.hits += found
        self.misses += len(scores) - found
        return CacheLookup(scores=scores, keys=keys)

    def store(self, key: bytes, score: float) -> None:
        if not self.enabled:
            return
        self._entries[key] = score
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = self.evictions = 0


@dataclass(frozen=True)
class CachedScoreReport:
    """The engine's report for the misses, merged with the hits; ``hits`` passages came from the cache."""

    report: ScoreReport
    hits: int
    lookup_seconds: float


def score_with_cache(
    engine: CrossEncoder,
    cache: ScoreCache,
    query: str,
    passages: Sequence[str],
    *,
    long_documents: LongDocuments,
    should_stop: Callable[[], bool] | None = None,
) -> CachedScoreReport:
    """Look every passage up, score only the misses with the engine, fill the cache with what got scored."""
    if not cache.enabled:
        report = _score(engine, query, passages, long_documents, should_stop)
        return CachedScoreReport(report=report, hits=0, lookup_seconds=0.0)
    started = time.perf_counter()
    options = engine.options
    window = (
        (options.window_max_per_passage, options.window_overlap_tokens) if long_documents == "window" else ()
    )
    namespace = cache.namespace(engine.sha256, long_documents, engine.describe()["max_length"], *window)
    lookup = cache.lookup(namespace, query, passages)
    lookup_seconds = time.perf_counter() - started
    misses = lookup.misses
    if not misses:
        return CachedScoreReport(
            report=ScoreReport(scores=lookup.scores), hits=lookup.hits, lookup_seconds=lookup_seconds
        )
    report = _score(engine, query, [passages[index] for index in misses], long_documents, should_stop)
    scores = list(lookup.scores)
    for index, score in zip(misses, report.scores, strict=True):
        scores[index] = score
        if score is not None:
            cache.store(lookup.keys[index], score)
    return CachedScoreReport(
        report=replace(report, scores=scores), hits=lookup.hits, lookup_seconds=lookup_seconds
    )


def _score(
    engine: CrossEncoder,
    query: str,
    passages: Sequence[str],
    long_documents: LongDocuments,
    should_stop: Callable[[], bool] | None,
) -> ScoreReport:
    # Out of time already (later requests of a batch): skip even the tokenizer, leave everything unscored.
    if should_stop is not None and should_stop():
        return ScoreReport(scores=[None] * len(passages))
    return engine.score(query, passages, long_documents=long_documents, should_stop=should_stop)
