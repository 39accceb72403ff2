"""Each word's WordPiece ids, cached: a text prepared by the WordPiece fast path is its words' ids in turn."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Sequence
from itertools import chain

from tokenizers import Tokenizer, models, pre_tokenizers

# Each word's WordPiece ids are kept once seen, up to this many words in all (a bound on memory, about 15 MB
# whatever callers send); a word past it is asked of the model again whenever a text holds it.
MAX_CACHED_WORDS = 65536
# Words not cached yet go to the model joined into texts of this many words (its batch call, no offsets).
LEARN_WORDS_PER_TEXT = 256


class WordPieces:
    """Each word's WordPiece ids, asked of the model once: the ids of a prepared text are its words' ids in turn.

    The twin splits a prepared text at whitespace and runs WordPiece on each word alone, so a word's ids do not
    depend on its neighbours. With its words cached, 50 passages of 4-12 words take about a third of the twin's
    time (``python -m tools.engine_overhead``: 296 against 820 us), and the query is read once a request, not
    once a passage. Words not cached yet go to the model together, joined into texts of LEARN_WORDS_PER_TEXT
    words, and are cut apart where a token does not start with the continuing-subword prefix; without a prefix
    that no word can start with, their texts go to the model whole. Up to MAX_CACHED_WORDS words are kept (in
    real text the common words soon are); past that, a request's new words are kept for that request only.
    """

    def __init__(self, model: models.Model, *, word_start: str | None, limit: int = MAX_CACHED_WORDS) -> None:
        """``word_start``: the continuing-subword prefix when no prepared word can start with it (its first
        character is set apart as punctuation), so a token whose text does not start with it starts a word;
        None learns only from texts of one token a word."""
        # The twin's pipeline without its truncation, padding or template: one word's ids, whole.
        self._splitter = Tokenizer(model)
        self._splitter.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self._token_text = model.id_to_token
        # token id -> whether it starts a word (its text does not start with the prefix)
        self._starts_word: dict[int, bool] = {}
        self._continues = word_start
        self._limit = limit
        self._ids: dict[str, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def clear(self) -> None:
        """Forget every cached word (a cold start's cache, for measuring)."""
        self._ids.clear()

    def ids_of(self, prepared: Sequence[str], max_words: int | None = None) -> list[list[int] | None]:
        """The ids of each prepared text (``WordPieceFastPath.prepare``) as the twin gives them untruncated;
        None for a text of more than ``max_words`` words, which are not looked up or learned."""
        results: list[list[int] | None] = []
        pending: list[tuple[int, list[str] | None]] = []  # texts with a word not cached yet, and their words
        lookup = self._ids.__getitem__
        for position, text in enumerate(prepared):
            # A prepared text holds no whitespace but spaces (the rest is read as a space or dropped), so
            # str.split() splits where the twin's WhitespaceSplit does. isprintable() guards that: it is False for
            # the separators str.split() alone splits at (U+001C-U+001F), as for any whitespace but the space.
            words = text.split() if text.isprintable() else None
            if words is not None and max_words is not None and len(words) > max_words:
                results.append(None)
                continue
            if words is not None:
                try:
                    results.append(list(chain.from_iterable(map(lookup, words))))
                    continue
                except KeyError:
                    pass
            results.append([])  # filled below
            pending.append((position, words))
        if not pending:
            return results
        new_words = {word for _, words in pending if words is not None for word in words} - self._ids.keys()
        learned = self._learn_words(list(new_words))
        if learned is None:  # the words' ids cannot be told apart: the texts whole, through the model
            self._encode_whole(prepared, pending, results)
            return results
        if len(self._ids) + len(learned) <= self._limit:
            self._ids.update(learned)
        else:  # the cache is full: this request's new words are kept for this request only
            lookup = ChainMap(learned, self._ids).__getitem__
        whole = [(position, words) for position, words in pending if words is None]
        for position, words in pending:
            if words is not None:
                results[position] = list(chain.from_iterable(map(lookup, words)))
        if whole:
            self._encode_whole(prepared, whole, results)
        return results

    def _learn_words(self, words: list[str]) -> dict[str, tuple[int, ...]] | None:
        """Each word's ids from the model, the words joined into texts of LEARN_WORDS_PER_TEXT (its batch call);
        None when a text's ids cannot be told apart into its words'."""
        prefix = self._continues
        if prefix is None:
            return None
        texts = [
            words[start : start + LEARN_WORDS_PER_TEXT]
            for start in range(0, len(words), LEARN_WORDS_PER_TEXT)
        ]
        learned: dict[str, tuple[int, ...]] = {}
        encodings = self._splitter.encode_batch_fast(
            [" ".join(text) for text in texts], add_special_tokens=False
        )
        for text, encoding in zip(texts, encodings, strict=True):
            ids = encoding.ids
            if len(ids) == len(text):  # one token a word, the common case
                learned.update(zip(text, zip(ids, strict=True), strict=True))
                continue
            pieces = self._split_pieces(ids, prefix)
            if pieces is None or len(pieces) != len(text):
                return None
            learned.update(zip(text, pieces, strict=True))
        return learned

    def _split_pieces(self, ids: list[int], prefix: str) -> list[tuple[int, ...]] | None:
        """A text's ids cut into its words': the batch call gives no word ids, but a word's first token is the one
        whose text does not start with ``prefix`` (no prepared word can start with it). None for an unknown id, or
        when the first token would not start a word."""
        starts: list[int] = []
        for at, token in enumerate(ids):
            starts_word = self._starts_word.get(token)
            if starts_word is None:
                text = self._token_text(token)
                if text is None:
                    return None
                starts_word = self._starts_word[token] = not text.startswith(prefix)
            if starts_word:
                starts.append(at)
        if not starts or starts[0] != 0:  # a text's first token starts a word, or this reading is wrong
            return None
        return [tuple(ids[start:end]) for start, end in zip(starts, [*starts[1:], len(ids)], strict=True)]

    def _encode_whole(
        self,
        prepared: Sequence[str],
        pending: Sequence[tuple[int, list[str] | None]],
        results: list[list[int] | None],
    ) -> None:
        """The pending texts' ids from the model, each text whole (one batch call: the twin's cost)."""
        encodings = self._splitter.encode_batch_fast(
            [prepared[position] for position, _ in pending], add_special_tokens=False
        )
        for (position, _), encoding in zip(pending, encodings, strict=True):
            results[position] = encoding.ids
