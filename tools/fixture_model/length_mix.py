"""Named passage-length distributions: (query, passages) requests whose passages follow one word-length mix.

Passages are words of the fixture vocabulary, each one WordPiece token for the BERT-uncased families, so a
passage of N words is N tokens there (real English runs about 1.3 tokens a word). Queries are 3-10 words and
some passage words are query words, as in CorpusGenerator. "mixed-long-tail" is CorpusGenerator itself, byte
for byte; the others carry no exotic snippets, so their word counts are exactly the declared ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tools.fixture_model.corpus import CorpusGenerator, SyntheticRequest


@dataclass(frozen=True)
class UniformWords:
    """Word counts drawn uniformly from low..high (both included)."""

    low: int
    high: int

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class LognormalWords:
    """Word counts from a lognormal with the given median and mean, redrawn until within low..high."""

    median: float
    mean: float
    low: int
    high: int

    @property
    def mu(self) -> float:
        return math.log(self.median)

    @property
    def sigma(self) -> float:
        # A lognormal's median is e^mu and its mean e^(mu + sigma^2 / 2).
        return math.sqrt(2 * math.log(self.mean / self.median))

    def draw(self, rng: random.Random) -> int:
        while True:
            words = round(rng.lognormvariate(self.mu, self.sigma))
            if self.low <= words <= self.high:
                return words


# MS MARCO v1 passage ranking collection (collection.tsv, Bajaj et al. 2016, "MS MARCO: A Human Generated MAchine
# Reading COmprehension Dataset", arXiv:1611.09268): 8,841,823 passages of web text. Checked here: its
# sentence-transformers/msmarco-corpus dataset card gives 3,089,201,649 bytes for those 8,841,823 rows (an int64
# id and the text), about 341 bytes of text a passage, which at about 6 bytes a word (a space included) is some
# 57 words. As remembered, not checked here: mean about 56 words, median about 50, most passages under 100
# words and a few up to about 360. A lognormal fitted to that mean and median (sigma 0.48) puts 7 % over 100
# words and under 0.1 % over 200.
MSMARCO_WORDS = LognormalWords(median=50, mean=56, low=4, high=362)

WordCounts = UniformWords | LognormalWords


@dataclass(frozen=True)
class LengthMix:
    """A named distribution: its table label, and its word counts (None: CorpusGenerator's own mix)."""

    name: str
    label: str
    words: WordCounts | None


LENGTH_MIXES: dict[str, LengthMix] = {
    mix.name: mix
    for mix in (
        LengthMix("short", "short, 4-12 words (product titles)", UniformWords(4, 12)),
        LengthMix("20-40", "20-40 words", UniformWords(20, 40)),
        LengthMix("40-80", "40-80 words, uniform", UniformWords(40, 80)),
        LengthMix("150-200", "150-200 words (fixed-size RAG chunks)", UniformWords(150, 200)),
        LengthMix("mixed-long-tail", "mixed lengths with a long tail (~10 % cut at 512 tokens)", None),
        LengthMix("msmarco", "MS MARCO-like (lognormal, median 50, mean 56 words)", MSMARCO_WORDS),
    )
}


class _WordCountCorpus(CorpusGenerator):
    """CorpusGenerator's queries and query-word sprinkling, passage lengths from ``words``, no exotic text."""

    exotic_share = 0.0

    def __init__(self, words: WordCounts, seed: int) -> None:
        super().__init__(seed)
        self._word_counts = words

    def passage_words(self) -> int:
        return self._word_counts.draw(self._random)


def length_mix_corpus(name: str, seed: int = 0) -> CorpusGenerator:
    """The request generator of the distribution ``name`` (a key of LENGTH_MIXES), deterministic by seed."""
    try:
        mix = LENGTH_MIXES[name]
    except KeyError:
        known = ", ".join(LENGTH_MIXES)
        raise ValueError(f"unknown length distribution {name!r}; known: {known}") from None
    if mix.words is None:
        return CorpusGenerator(seed)
    return _WordCountCorpus(mix.words, seed)


def requests(name: str, count: int, passages: int, seed: int = 0) -> list[SyntheticRequest]:
    """``count`` requests of ``passages`` passages each from the distribution ``name``."""
    corpus = length_mix_corpus(name, seed)
    return [corpus.request(passages) for _ in range(count)]
