"""A fixed-size cache of (query, passage) scores for one warm environment; exact because scores are batch-invariant."""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from reranker.engine import CrossEncoder, LongDocuments, ScoreReport

KEY_BYTES = 16
# One slot: the 16-byte key as two uint64, the score as a float64 (exactly the Python float that was stored)
# and the tick of its last use (0: empty). Every slot is allocated up front, so SCORE_CACHE_MB bounds the
# memory at every moment (bench/score_cache_memory.py measures it): nothing grows, nothing is rebuilt.
ENTRY_BYTES = 32
_LOW, _HIGH, _SCORE, _STAMP = range(4)  # the uint64 words of a slot; _SCORE holds a float64's bits
# Set-associative: a key may live only in the WAYS slots of its set, and a full set evicts its least
# recently used slot: exact LRU within a set, close to LRU overall. A set's slots are contiguous (256 bytes),
# so a lookup reads four cache lines per key. Plain uint64 words, not a structured dtype: numpy gathers those
# rows about 5x faster.
WAYS = 8
_KEY_WORDS = struct.Struct("<QQ")  # a key as the two little-endian uint64 the table holds
_FLOAT, _FLOAT_BITS = struct.Struct("<d"), struct.Struct("<Q")
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
    """Map from hash(model, scoring options, query, passage) to score in a fixed byte budget.

    Keys are blake2b digests, so passage text is never kept in memory longer than the request. The table is
    one preallocated numpy array of ``capacity // WAYS`` sets of ``WAYS`` slots (ENTRY_BYTES each); a key's
    set is its low 64 bits modulo the number of sets. Not thread-safe: one Lambda environment serves one
    invocation at a time.
    """

    def __init__(self, max_bytes: int) -> None:
        slots = max(0, max_bytes // ENTRY_BYTES)
        self._ways = min(WAYS, slots)
        self._sets = slots // self._ways if self._ways else 0
        self.capacity = self._sets * self._ways
        # np.zeros maps zero pages lazily: resident memory grows with use, up to the budget and no further.
        self._table = np.zeros((self._sets, self._ways, 4), dtype=np.uint64)
        self._tick = 0
        self._entries = 0
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
        return self._entries

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
        scores: list[float | None] = [None] * len(keys)
        if keys:
            # Every key at once: gather each key's set, compare its WAYS slots, read and stamp the hits.
            words = np.frombuffer(b"".join(keys), dtype="<u8").reshape(-1, 2)
            rows = words[:, 0] % np.uint64(self._sets)
            slots = np.take(self._table, rows.astype(np.intp), axis=0)
            match = (
                (slots[:, :, _LOW] == words[:, :1])
                & (slots[:, :, _HIGH] == words[:, 1:])
                & (slots[:, :, _STAMP] != 0)
            )
            found = np.flatnonzero(match.any(axis=1))
            if found.size:
                ways = match[found].argmax(axis=1)
                hit_scores = slots.view(np.float64)[found, ways, _SCORE].tolist()
                for index, score in zip(found.tolist(), hit_scores, strict=True):
                    scores[index] = score
                ticks = np.arange(self._tick + 1, self._tick + 1 + found.size, dtype=np.uint64)
                self._table[rows[found], ways, _STAMP] = ticks
                self._tick += int(found.size)
        found_count = len(keys) - scores.count(None)
        self.hits += found_count
        self.misses += len(keys) - found_count
        return CacheLookup(scores=scores, keys=keys)

    def store(self, key: bytes, score: float) -> None:
        if not self.enabled:
            return
        low, high = _KEY_WORDS.unpack(key)
        row = low % self._sets
        slots = self._table[row]
        stamps = slots[:, _STAMP].tolist()
        lows = slots[:, _LOW].tolist()
        way = next(
            (
                way
                for way in range(self._ways)
                if lows[way] == low and stamps[way] and slots[way, _HIGH] == high
            ),
            -1,
        )
        if way < 0:
            way = stamps.index(min(stamps))  # an empty slot (stamp 0) if the set has one, else its LRU
            if stamps[way]:
                self.evictions += 1
            else:
                self._entries += 1
        self._tick += 1
        (score_bits,) = _FLOAT_BITS.unpack(_FLOAT.pack(score))
        slots[way] = (low, high, score_bits, self._tick)

    def clear(self) -> None:
        self._table[:, :, _STAMP] = 0
        self._tick = self._entries = 0
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
