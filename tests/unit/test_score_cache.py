"""The warm score cache: keys that cannot collide, (approximate) LRU eviction, a budget that holds, exact scores."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.score_cache_memory import run_child
from reranker.engine import CrossEncoder, EngineOptions
from reranker.score_cache import ENTRY_BYTES, WAYS, ScoreCache, score_with_cache
from tests.models import fixture_model

MIB = 1024 * 1024
NAMESPACE = ScoreCache.namespace("sha", "truncate", 512)

PASSAGES = [f"passage {index} about airships and the weather in spring" for index in range(12)]


@pytest.fixture(scope="module")
def int8() -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8"))


class CountingEngine:
    """Wraps the engine and records which passages reached it."""

    def __init__(self, engine: CrossEncoder) -> None:
        self.engine = engine
        self.scored: list[list[str]] = []
        self.options = engine.options
        self.sha256 = engine.sha256

    def describe(self) -> dict[str, object]:
        return self.engine.describe()

    def score(self, query: str, passages: list[str], **kwargs: object) -> object:
        self.scored.append(list(passages))
        return self.engine.score(query, passages, **kwargs)  # type: ignore[arg-type]


# --- keys ------------------------------------------------------------------------------------------


@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_different_pairs_never_share_a_key(
    query_a: str, passage_a: str, query_b: str, passage_b: str
) -> None:
    namespace = ScoreCache.namespace("sha", "truncate", 512)
    same = (query_a, passage_a) == (query_b, passage_b)
    key_a = ScoreCache.key(namespace, query_a, passage_a)
    assert (key_a == ScoreCache.key(namespace, query_b, passage_b)) == same


def test_separator_characters_in_text_cannot_forge_a_key() -> None:
    namespace = ScoreCache.namespace("sha", "truncate", 512)
    assert ScoreCache.key(namespace, "a\x00b", "c") != ScoreCache.key(namespace, "a", "b\x00c")
    assert ScoreCache.key(namespace, "ab", "c") != ScoreCache.key(namespace, "a", "bc")


def test_model_mode_and_length_are_part_of_the_key() -> None:
    keys = {
        ScoreCache.key(ScoreCache.namespace(sha, mode, length), "q", "p")
        for sha in ("model-a", "model-b")
        for mode in ("truncate", "window")
        for length in (256, 512)
    }
    assert len(keys) == 8


# --- eviction ----------------------------------------------------------------------------------


def test_size_comes_from_megabytes_and_zero_means_off() -> None:
    assert ENTRY_BYTES == 32
    assert ScoreCache.from_megabytes(1).capacity == 1024 * 1024 // ENTRY_BYTES
    assert ScoreCache(ENTRY_BYTES * 20).capacity == 16  # whole sets of WAYS slots only: never over budget
    off = ScoreCache.from_megabytes(0)
    assert not off.enabled
    lookup = off.lookup(b"ns", "q", ["a", "b"])
    assert lookup.scores == [None, None]
    off.store(b"k", 0.5)
    assert len(off) == 0


def test_least_recently_used_entry_is_evicted_first() -> None:
    # Given room for two entries (one set: exact LRU)
    cache = ScoreCache(2 * ENTRY_BYTES)
    first, second, third = (cache.key(NAMESPACE, "q", text) for text in ("a", "b", "c"))
    cache.store(first, 0.1)
    cache.store(second, 0.2)
    # When "a" is read (so "b" becomes the oldest) and "c" arrives
    assert cache.lookup(NAMESPACE, "q", ["a"]).scores == [0.1]
    cache.store(third, 0.3)
    # Then "b" is gone, "a" and "c" stay
    assert cache.lookup(NAMESPACE, "q", ["a", "b", "c"]).scores == [0.1, None, 0.3]
    assert cache.evictions == 1
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


operations = st.lists(
    st.tuples(st.sampled_from(["store", "lookup"]), st.lists(st.integers(0, 24), min_size=1, max_size=6)),
    max_size=80,
)


@given(operations)
def test_one_set_is_an_exact_lru(steps: list[tuple[str, list[int]]]) -> None:
    """With capacity <= WAYS the cache is one set, so it must behave exactly like an LRU of that size."""
    cache = ScoreCache(WAYS * ENTRY_BYTES)
    reference: OrderedDict[str, float] = OrderedDict()
    evictions = hits = misses = 0
    for step, (action, numbers) in enumerate(steps):
        texts = [f"passage {number}" for number in numbers]
        if action == "lookup":
            scores = cache.lookup(NAMESPACE, "q", texts).scores
            expected: list[float | None] = []
            for text in texts:
                expected.append(reference.get(text))
                if text in reference:
                    reference.move_to_end(text)
                    hits += 1
                else:
                    misses += 1
            assert scores == expected
        else:
            for text in texts:
                cache.store(cache.key(NAMESPACE, "q", text), step + len(text) / 100)
                reference[text] = step + len(text) / 100
                reference.move_to_end(text)
                if len(reference) > WAYS:
                    reference.popitem(last=False)
                    evictions += 1
        assert (len(cache), cache.evictions, cache.hits, cache.misses) == (
            len(reference),
            evictions,
            hits,
            misses,
        )


@given(operations, st.integers(2 * WAYS, 8 * WAYS))
def test_many_sets_never_answer_a_wrong_score_and_count_exactly(
    steps: list[tuple[str, list[int]]], slots: int
) -> None:
    cache = ScoreCache(slots * ENTRY_BYTES)
    latest: dict[str, float] = {}
    stored_keys: set[str] = set()
    lookups = 0
    for step, (action, numbers) in enumerate(steps):
        texts = [f"passage {number}" for number in numbers]
        if action == "lookup":
            lookups += len(texts)
            for text, score in zip(texts, cache.lookup(NAMESPACE, "q", texts).scores, strict=True):
                assert score is None or score == latest[text]
        else:
            for text in texts:
                latest[text] = step * 1.5 + len(text)
                cache.store(cache.key(NAMESPACE, "q", text), latest[text])
                stored_keys.add(text)
                # What was just stored is the most recent entry of its set: it is always there.
                assert cache.lookup(NAMESPACE, "q", [text]).scores == [latest[text]]
                lookups += 1
    assert len(cache) <= cache.capacity
    assert cache.hits + cache.misses == lookups
    resident = sum(score is not None for score in cache.lookup(NAMESPACE, "q", sorted(stored_keys)).scores)
    assert resident == len(cache)
    assert cache.evictions >= len(stored_keys) - len(cache)  # a key evicted and stored again counts twice


def test_recently_read_entries_survive_a_wave_of_new_ones() -> None:
    # Given a full cache (two capacities went through it), a quarter of whose entries was just read
    cache = ScoreCache(4096 * ENTRY_BYTES)
    for index in range(2 * cache.capacity):
        cache.store(cache.key(NAMESPACE, "q", f"old {index}"), float(index))
    old = [f"old {index}" for index in range(2 * cache.capacity)]
    resident = [
        text for text, score in zip(old, cache.lookup(NAMESPACE, "q", old).scores, strict=True) if score
    ]
    assert len(resident) == len(cache) >= 0.97 * cache.capacity
    hot, cold = resident[::4], [text for index, text in enumerate(resident) if index % 4]
    assert None not in cache.lookup(NAMESPACE, "q", hot).scores
    evictions_before = cache.evictions

    # When a quarter of a capacity of new passages arrives
    for index in range(cache.capacity // 4):
        cache.store(cache.key(NAMESPACE, "q", f"new {index}"), -1.0)

    # Then (approximately LRU: exact within each set of WAYS) the evictions fell on the cold entries; an
    # exact LRU would keep every hot one, random eviction would lose a quarter of the losses among them
    evicted = cache.evictions - evictions_before
    hot_lost = sum(score is None for score in cache.lookup(NAMESPACE, "q", hot).scores)
    cold_lost = sum(score is None for score in cache.lookup(NAMESPACE, "q", cold).scores)
    assert evicted >= 0.95 * (cache.capacity // 4)
    assert hot_lost + cold_lost <= evicted  # a crowded set may also evict a passage of the new wave
    assert hot_lost <= 0.02 * len(hot)
    assert hot_lost / len(hot) <= 0.1 * cold_lost / len(cold)


# --- memory: the budget holds at every moment ----------------------------------------------------

# What the process needs beyond the table while it serves requests, measured by bench/score_cache_memory.py
# and the same at every budget (1 to 32 MiB): tracemalloc ~58 KiB (one 100-passage lookup's keys and
# temporaries), RSS ~1.1 MiB (also the interpreter's and numpy's pages first touched by the request loop).
TRACED_ALLOWANCE = 128 * 1024
RSS_ALLOWANCE = 1.5 * MIB


def test_filled_cache_peaks_within_its_budget() -> None:
    # Given a fresh process that stores 1.5 capacities of passages through lookup/store, as requests do
    rss = run_child(6, None, "rss", turnover=1.5)
    traced = run_child(1, None, "tracemalloc", turnover=1.5)

    # Then it is full, and neither the peak RSS growth nor the traced peak ever went past the budget
    assert rss["entries"] >= 0.97 * rss["capacity"] and rss["evictions"] > 0
    assert rss["vmhwm_growth_bytes"] <= rss["budget_bytes"] + RSS_ALLOWANCE, rss
    assert traced["tracemalloc_peak_bytes"] <= traced["budget_bytes"] + TRACED_ALLOWANCE, traced


# --- with the engine -------------------------------------------------------------------------------


def test_cached_scores_are_identical_to_uncached_ones(int8: CrossEncoder) -> None:
    cache = ScoreCache.from_megabytes(1)
    uncached = int8.score("which airship", PASSAGES).scores
    miss = score_with_cache(int8, cache, "which airship", PASSAGES, long_documents="truncate")
    hit = score_with_cache(int8, cache, "which airship", PASSAGES, long_documents="truncate")
    assert miss.hits == 0
    assert hit.hits == len(PASSAGES)
    assert miss.report.scores == uncached
    assert hit.report.scores == uncached  # bit-identical: int8 scores do not depend on batch neighbours


def test_only_misses_reach_the_engine_and_the_merge_keeps_the_callers_order(int8: CrossEncoder) -> None:
    cache = ScoreCache.from_megabytes(1)
    engine = CountingEngine(int8)
    score_with_cache(engine, cache, "q", PASSAGES[:4], long_documents="truncate")  # type: ignore[arg-type]
    mixed = [PASSAGES[5], PASSAGES[1], PASSAGES[6], PASSAGES[3]]
    result = score_with_cache(engine, cache, "q", mixed, long_documents="truncate")  # type: ignore[arg-type]
    assert engine.scored[-1] == [PASSAGES[5], PASSAGES[6]]
    assert result.hits == 2
    assert result.report.scores == int8.score("q", mixed).scores


def test_modes_do_not_share_entries(int8: CrossEncoder) -> None:
    cache = ScoreCache.from_megabytes(1)
    score_with_cache(int8, cache, "q", PASSAGES[:3], long_documents="truncate")
    windowed = score_with_cache(int8, cache, "q", PASSAGES[:3], long_documents="window")
    assert windowed.hits == 0


def test_unscored_passages_are_not_cached(int8: CrossEncoder) -> None:
    cache = ScoreCache.from_megabytes(1)
    stopped = score_with_cache(
        int8, cache, "q", PASSAGES[:3], long_documents="truncate", should_stop=lambda: True
    )
    assert stopped.report.scores == [None, None, None]
    assert len(cache) == 0


def test_disabled_cache_passes_straight_to_the_engine(int8: CrossEncoder) -> None:
    result = score_with_cache(int8, ScoreCache(0), "q", PASSAGES[:3], long_documents="truncate")
    assert result.report.scores == int8.score("q", PASSAGES[:3]).scores
    assert result.hits == 0


def test_window_options_are_part_of_the_key() -> None:
    cache = ScoreCache.from_megabytes(1)
    wide = CrossEncoder.load(fixture_model("int8"), EngineOptions(window_max_per_passage=8))
    narrow = CrossEncoder.load(fixture_model("int8"), EngineOptions(window_max_per_passage=2))
    score_with_cache(wide, cache, "q", PASSAGES[:2], long_documents="window")
    assert score_with_cache(narrow, cache, "q", PASSAGES[:2], long_documents="window").hits == 0
    assert score_with_cache(wide, cache, "q", PASSAGES[:2], long_documents="window").hits == 2


# --- wired into the handler ------------------------------------------------------------------------


def test_handler_answers_a_repeat_from_the_cache_with_identical_scores(configure: Any, output: Any) -> None:
    from tools.invoke import LocalContext

    cold = configure(SCORE_CACHE_MB="0", force=True).lambda_handler(
        {"query": "which airship", "passages": PASSAGES}, LocalContext()
    )
    app = configure(SCORE_CACHE_MB="1", force=True)
    output()
    miss = app.lambda_handler({"query": "which airship", "passages": PASSAGES}, LocalContext())
    hit = app.lambda_handler({"query": "which airship", "passages": PASSAGES}, LocalContext())
    _, lines = output()
    assert miss["results"] == hit["results"] == cold["results"]
    assert (miss["usage"]["cached"], hit["usage"]["cached"]) == (0, len(PASSAGES))
    assert "cached" not in cold["usage"]
    rates = [value for line in lines if "ScoreCacheHitRate" in line for value in line["ScoreCacheHitRate"]]
    assert rates == [0.0, 100.0]
    health = app.health(None, None, None)["score_cache"]
    assert (health["enabled"], health["entries"], health["hits"]) == (True, len(PASSAGES), len(PASSAGES))


def test_off_switch_emits_no_cache_metrics(configure: Any, output: Any) -> None:
    from tools.invoke import LocalContext

    app = configure(SCORE_CACHE_MB="0")
    output()
    app.lambda_handler({"query": "q", "passages": PASSAGES[:2]}, LocalContext())
    text, _ = output()
    assert "ScoreCache" not in text
    assert app.health(None, None, None)["score_cache"]["enabled"] is False
