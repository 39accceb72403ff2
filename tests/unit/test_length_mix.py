"""The benchmark's passage-length distributions: declared word ranges and statistics, determinism, and the
request generator the other tests and recorded figures use left unchanged."""

from __future__ import annotations

import hashlib
import json
import random
import statistics

import pytest

from tools.fixture_model.corpus import CorpusGenerator, MultilingualCorpusGenerator, SyntheticRequest
from tools.fixture_model.length_mix import (
    LENGTH_MIXES,
    MSMARCO_WORDS,
    LognormalWords,
    UniformWords,
    length_mix_corpus,
    requests,
)

UNIFORM = [name for name, mix in LENGTH_MIXES.items() if isinstance(mix.words, UniformWords)]


def passage_words(name: str, seed: int = 0) -> list[int]:
    """Word counts of 2,000 passages (40 requests of 50) of one distribution."""
    return [len(passage.split()) for request in requests(name, 40, 50, seed) for passage in request.passages]


def digest(generated: list[SyntheticRequest]) -> str:
    payload = json.dumps([[request.query, list(request.passages)] for request in generated])
    return hashlib.sha256(payload.encode()).hexdigest()


def test_the_declared_distributions_are_the_benchmarks_six() -> None:
    assert list(LENGTH_MIXES) == ["short", "20-40", "40-80", "150-200", "mixed-long-tail", "msmarco"]
    assert [LENGTH_MIXES[name].words for name in UNIFORM] == [
        UniformWords(4, 12),
        UniformWords(20, 40),
        UniformWords(40, 80),
        UniformWords(150, 200),
    ]


@pytest.mark.parametrize("name", UNIFORM)
def test_a_uniform_mix_covers_exactly_its_declared_word_range(name: str) -> None:
    words = LENGTH_MIXES[name].words
    assert isinstance(words, UniformWords)
    counts = passage_words(name)
    assert (min(counts), max(counts)) == (words.low, words.high)
    middle = (words.low + words.high) / 2
    assert abs(statistics.mean(counts) - middle) < 0.05 * (words.high - words.low) + 0.5


def test_the_msmarco_mix_has_the_published_statistics() -> None:
    assert MSMARCO_WORDS.sigma == pytest.approx(0.476, abs=0.001)
    counts = passage_words("msmarco")
    assert all(MSMARCO_WORDS.low <= count <= MSMARCO_WORDS.high for count in counts)
    assert statistics.median(counts) == pytest.approx(50, abs=3)
    assert statistics.mean(counts) == pytest.approx(56, abs=3)
    under_100 = sum(count < 100 for count in counts) / len(counts)
    assert 0.88 < under_100 < 0.97  # most passages, not all: the fit puts 7 % above


def test_a_lognormal_redraws_outside_its_bounds() -> None:
    narrow = LognormalWords(median=50, mean=56, low=48, high=52)
    rng = random.Random(3)
    assert {narrow.draw(rng) for _ in range(500)} == {48, 49, 50, 51, 52}


@pytest.mark.parametrize("name", list(LENGTH_MIXES))
def test_every_mix_has_queries_of_3_to_10_words_and_is_deterministic_by_seed(name: str) -> None:
    first = requests(name, 20, 5, seed=1)
    assert {len(request.query.split()) for request in first} <= set(range(3, 11))
    assert first == requests(name, 20, 5, seed=1)
    assert first != requests(name, 20, 5, seed=2)


def test_passages_share_words_with_their_query() -> None:
    shared = [
        bool(set(request.query.split()) & set(passage.split()))
        for request in requests("40-80", 10, 20, seed=4)
        for passage in request.passages
    ]
    assert 0.3 < sum(shared) / len(shared) < 1.0


def test_the_mixed_long_tail_is_the_corpus_generator_itself() -> None:
    corpus = CorpusGenerator(seed=7)
    assert requests("mixed-long-tail", 4, 30, seed=7) == [corpus.request(30) for _ in range(4)]


def test_an_unknown_distribution_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown length distribution 'tiny'; known: short, 20-40"):
        length_mix_corpus("tiny")


# Computed from the generator before the length mixes were added: other tests, the fixture models'
# calibration and every recorded figure depend on these exact requests.
def test_the_corpus_generators_requests_are_unchanged() -> None:
    corpus = CorpusGenerator(seed=42)
    generated = [corpus.request(50) for _ in range(3)] + CorpusGenerator(seed=3).requests(5)
    assert digest(generated) == CORPUS_DIGEST
    multilingual = MultilingualCorpusGenerator(seed=7).requests(5)
    assert digest(multilingual) == MULTILINGUAL_DIGEST


CORPUS_DIGEST = "bc24e58404b6b38c7add8a4d215e41286953915a99067839af86e7c9815bf6d6"
MULTILINGUAL_DIGEST = "ef23894a02342b1bb85c48fdda05a2b53b257718a1618f0619e26afcf8fa0214"
