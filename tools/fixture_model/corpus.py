"""Deterministic MS MARCO-like (query, passages) requests for calibration, parity tests and benchmarks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

VOCAB_FILE = Path(__file__).parent / "tokenizer" / "vocab.txt"

# Text a real RAG corpus carries beside plain English: accents, CJK, RTL, emoji, ZWJ sequences, symbols.
EXOTIC_SNIPPETS = (
    "café naïve résumé",
    "東京の天気は晴れ",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "🤖🚀 emoji 👩‍👩‍👧 family",
    "∑ x² ≤ ∞ — ok",
    "tab\tand\nnewline",
    "   ",
    "ℌ𝔢𝔩𝔩𝔬 math letters",
)


@dataclass(frozen=True)
class SyntheticRequest:
    query: str
    passages: tuple[str, ...]


def load_words() -> list[str]:
    """Whole alphabetic words of the BERT uncased vocabulary (no subword pieces, no specials)."""
    words = []
    for line in VOCAB_FILE.read_text(encoding="utf-8").splitlines():
        if line.isascii() and line.isalpha() and len(line) > 2:
            words.append(line)
    return words


class CorpusGenerator:
    """Queries of 3-10 words; passages whose token lengths follow an MS MARCO-like mix.

    About 10 % of passages are long enough to be truncated at 512 tokens; some share query words so that
    scores depend on the pair, some are empty or carry unicode and emoji.
    """

    # Share of passages that get one of EXOTIC_SNIPPETS inserted (the draw is made for every passage).
    exotic_share = 0.15

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        self._words = load_words()

    def _words_of(self, count: int) -> list[str]:
        return [self._random.choice(self._words) for _ in range(count)]

    def query(self) -> str:
        return " ".join(self._words_of(self._random.randint(3, 10)))

    def passage_words(self) -> int:
        """How many words the next passage has (0: an empty passage)."""
        draw = self._random.random()
        if draw < 0.03:
            return 0
        if draw < 0.13:
            return self._random.randint(450, 900)  # truncated at 512 tokens
        if draw < 0.45:
            return self._random.randint(80, 200)
        return self._random.randint(20, 80)

    def passage(self, query: str) -> str:
        length = self.passage_words()
        if length == 0:
            return ""
        words = self._words_of(length)
        query_words = query.split()
        for _ in range(self._random.randint(0, 4)):
            words[self._random.randrange(len(words))] = self._random.choice(query_words)
        if self._random.random() < self.exotic_share:
            words.insert(self._random.randrange(len(words) + 1), self._random.choice(EXOTIC_SNIPPETS))
        return " ".join(words)

    def request(self, passages: int) -> SyntheticRequest:
        query = self.query()
        return SyntheticRequest(query, tuple(self.passage(query) for _ in range(passages)))

    def requests(self, count: int, min_passages: int = 1, max_passages: int = 100) -> list[SyntheticRequest]:
        return [self.request(self._random.randint(min_passages, max_passages)) for _ in range(count)]


# Everyday words of languages a multilingual model meets: accents, Cyrillic, Greek, Arabic, Hangul, and CJK
# runs written without spaces (the BERT normalizer splits Han characters one per token).
MULTILINGUAL_WORDS = {
    "fr": "été café naïve élève forêt hôpital français très déjà où cœur façade théâtre réseau données"
    " recherche modèle requête réponse système début première année",
    "es": "niño año mañana corazón canción información búsqueda página según también está están"
    " pequeño señal después rápido música",
    "de": "straße über größe müssen schön fräulein äpfel mädchen grün häuser brücke lösung übersetzung"
    " prüfung",
    "ru": "привет мир поиск запрос ответ документ модель данные быстро время город вода книга язык"
    " работа система вопрос",
    "el": "καλημέρα κόσμος αναζήτηση έγγραφο απάντηση γλώσσα νερό",
    "ar": "مرحبا العالم بحث سؤال جواب وثيقة نموذج بيانات سريع مدينة ماء كتاب لغة عمل نظام",
    "ko": "안녕하세요 검색 질문 답변 문서 모델 데이터 도시 물 책 언어",
    "zh": "东京天气晴朗 搜索引擎 问题答案 文档模型 数据速度 城市水书 语言工作系统 人工智能 北京大学",
    "ja": "東京の天気は晴れです 検索エンジン 質問と回答 文書モデル データの速さ 日本語の本 ひらがな カタカナ",
}


def multilingual_words() -> list[str]:
    return [word for words in MULTILINGUAL_WORDS.values() for word in words.split()]


class MultilingualCorpusGenerator(CorpusGenerator):
    """Requests in mixed languages: about half the words English, the rest drawn from MULTILINGUAL_WORDS.

    Some queries are wholly in one other language; about 10 % of passages still run past 512 tokens.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self._english = self._words
        self._foreign = multilingual_words()
        self._languages = [words.split() for words in MULTILINGUAL_WORDS.values()]

    def _words_of(self, count: int) -> list[str]:
        return [
            self._random.choice(self._foreign if self._random.random() < 0.5 else self._english)
            for _ in range(count)
        ]

    def query(self) -> str:
        if self._random.random() < 0.3:
            language = self._random.choice(self._languages)
            return " ".join(self._random.choice(language) for _ in range(self._random.randint(2, 6)))
        return super().query()
