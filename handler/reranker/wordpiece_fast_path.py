"""Text through a BERT WordPiece tokenizer faster than the tokenizer itself, with exactly the tokenizer's own tokens.

How much faster, as measured: about 2x on ASCII MS MARCO-like passages (50 and 100 of them in 3.3-3.4 and
6.4-6.5 ms against 6.6-6.8 and 13.1-14.1 ms through the tokenizer), about 1.3x on 50 French or curly-quoted
English passages (6.2-6.4 against 8.0-8.3 ms; both ``python -m bench.deadline_margin`` on a quiet machine), and
1.3-1.9x on real text: 178,813 snippets of man pages in 30 languages, locale and CLDR data, faker locales, emoji
sequences and Python sources, with NFD, invisible-character and odd-whitespace variants.

In Rust, BertNormalizer and BertPreTokenizer keep a character alignment through every step, and on one vCPU
that is most of the tokenizing time. Both work character by character: each character is dropped, read as a
space, set apart (punctuation; CJK ideographs), or kept as (its normalized form in) a word. So a text can be
prepared with ``str.translate`` and handed to a twin of the tokenizer that has no normalizer and only splits at
spaces, before the same WordPiece, truncation and pair template. ASCII text takes two C-speed calls
(``str.lower``, then ``str.translate``); other text a table translation (a second when it could hold an added
token).

Nothing is assumed about a character: what each one becomes is asked of the tokenizer's own normalizer and
pre-tokenizer (ASCII and the common Latin and punctuation blocks when the model loads, others the first time a
text holds them), and a tokenizer whose ASCII reading is not BERT's gets no fast path. A text goes through the
tokenizer itself when it holds a character whose reading depends on its neighbours (combining marks), or when an
added token could match in it: one added with ``normalized=False`` (``[SEP]``) where the raw text holds it, one
added with ``normalized=True`` where the normalized text holds its content as the normalizer reads it (an added
"résumé" matches "RESUME" in an uncased model).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal

from tokenizers import Encoding, Tokenizer, models, normalizers, pre_tokenizers

from reranker.word_pieces import WordPieces

# The characters whose reading is learned from the tokenizer when the model loads (about 2 ms): ASCII (checked
# against what the ASCII path relies on), Latin-1 Supplement, Latin Extended-A, General Punctuation, the euro sign.
LEARNED_CODES = (*range(0x180), *range(0x2000, 0x2070), 0x20AC)
ASCII_WHITESPACE = " \t\n\r"
# ASCII text after str.lower: whitespace read as spaces, punctuation set apart (checked against each tokenizer).
_SPACING = str.maketrans(
    {space: " " for space in ASCII_WHITESPACE} | {mark: f" {mark} " for mark in string.punctuation}
)

Reading = Literal["dropped", "space", "punctuation", "isolated", "word"]
# Characters past the ones learned at load are learned as texts bring them, up to this many in all (a bound on
# the tables' memory, about 2 MB, whatever callers send); texts with others take the tokenizer's own path.
MAX_LEARNED_CHARACTERS = 16384


class BatchEncoder:
    """A tokenizer's batch calls as the engine makes them: ``encode_batch_fast`` of pairs or of single texts."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def encode_pairs(self, query: str, passages: Sequence[str]) -> list[Encoding]:
        return self._tokenizer.encode_batch_fast([(query, passage) for passage in passages])

    def encode_texts(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[Encoding]:
        return self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)


def batch_encoder(tokenizer: Tokenizer) -> BatchEncoder:
    """The fast path where the tokenizer's pipeline allows it, else the tokenizer's own batch calls."""
    return WordPieceFastPath.for_tokenizer(tokenizer) or BatchEncoder(tokenizer)


def read_character(tokenizer: Tokenizer, character: str) -> tuple[Reading, str] | None:
    """How the tokenizer's normalizer and pre-tokenizer read one character; None when it is no single reading.

    "isolated" is a character the normalizer itself sets apart with spaces (BERT's CJK ideographs).
    """
    if tokenizer.normalizer is None or tokenizer.pre_tokenizer is None:
        return None
    normalized = tokenizer.normalizer.normalize_str(character)
    if not normalized:
        return "dropped", ""
    pieces = [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(f"a{normalized}a")]
    kind: Reading
    if pieces == ["a", "a"]:
        kind, normalized = "space", " "
    elif pieces == ["a", normalized, "a"] and len(normalized) == 1:
        kind = "punctuation"
    elif pieces == ["a", normalized.strip(), "a"] and normalized == f" {normalized.strip()} ":
        kind = "isolated"
    elif pieces == [f"a{normalized}a"]:
        kind = "word"
    else:
        return None
    return kind, normalized


def bert_ascii_reading(character: str, lowercase: bool) -> tuple[Reading, str]:
    """What BERT's normalizer and pre-tokenizer make of an ASCII character (what the ASCII path relies on)."""
    if character in ASCII_WHITESPACE:
        return "space", " "
    if not character.isprintable():
        return "dropped", ""
    if character in string.punctuation:
        return "punctuation", character
    return "word", character.lower() if lowercase else character


# What the prepare table gives a character it holds no reading for. The normalizer drops control characters, so
# no prepared text holds one otherwise: one translate both prepares a text and tells whether it could.
UNREADABLE = "\x00"


class _PrepareTable(dict[int, str]):
    """A str.translate table that gives UNREADABLE for a character it does not hold."""

    def __missing__(self, code: int) -> str:
        return UNREADABLE


class CharacterTables:
    """str.translate tables for text past ASCII: what the twin reads for each character, and its normalized form.

    ASCII, Latin-1 Supplement, Latin Extended-A and General Punctuation are learned when the model loads; any
    other character the first time a batch of texts holds it (about 3 us each), up to MAX_LEARNED_CHARACTERS.
    Learning a character adds it to the tables and nothing more, so it costs the same however many are known.
    Both tables hold every learned character, identity included: a key missing from a translate table costs a
    raised and cleared KeyError per character, five times the lookup (here a call of ``__missing__``, made only
    for a character not learned yet). A learned character that cannot be read alone prepares as UNREADABLE.
    """

    def __init__(self, tokenizer: Tokenizer, readings: dict[int, tuple[Reading, str] | None]) -> None:
        self._tokenizer = tokenizer
        self.prepare: dict[int, str] = _PrepareTable()
        self.normalize: dict[int, str] = {}
        self._seen: set[str] = set()
        self._add(readings)

    def prepared(self, text: str) -> str | None:
        """``text.translate(self.prepare)``; None when a character of text has no learned reading."""
        prepared = text.translate(self.prepare)
        return None if UNREADABLE in prepared else prepared

    def learn_from(self, texts: Sequence[str]) -> bool:
        """Learn the characters of these texts not seen before, all at once; whether any was learned."""
        room = MAX_LEARNED_CHARACTERS - len(self._seen)
        if room <= 0:
            return False
        new: set[str] = set()
        for text in texts:
            if not text.isascii():
                new.update(text)
        new.difference_update(self._seen)
        if not new:
            return False
        chosen = sorted(new)[:room]
        self._add({ord(character): read_character(self._tokenizer, character) for character in chosen})
        return True

    def _add(self, readings: dict[int, tuple[Reading, str] | None]) -> None:
        for code, reading in readings.items():
            if reading is None or not _composable(chr(code)) or UNREADABLE in reading[1]:
                self.prepare[code] = UNREADABLE
            else:
                kind, normalized = reading
                # The normalized form first: a text another thread prepares meanwhile has one for each character.
                self.normalize[code] = normalized
                self.prepare[code] = f" {normalized} " if kind == "punctuation" else normalized
            self._seen.add(chr(code))


class AddedTokenSearch:
    """Where the fast path looks for the tokenizer's added tokens; a false alarm only costs the tokenizer's own path.

    The tokenizer splits out a token added with ``normalized=False`` where the raw text holds its content, and one
    added with ``normalized=True`` where the normalized text holds its content normalized: in an uncased model an
    added "résumé" is "resume", and matches "RESUME". ASCII text, whose normalized form is ASCII, is searched case
    folded for the ASCII ones. Other text: its normalized form for each normalized token and each printable ASCII
    raw one (the normalizer reads those character by character, so the raw text holding one means the normalized
    text holds it folded), its raw form for the other raw ones.
    """

    def __init__(
        self, *, in_ascii: Sequence[str], in_normalized: Sequence[str], in_raw: Sequence[str]
    ) -> None:
        self.in_ascii = tuple(sorted(set(in_ascii)))
        self.in_normalized = tuple(sorted(set(in_normalized)))
        self.in_raw = tuple(sorted(set(in_raw)))
        # A token's character is one quick scan; only texts holding one are searched for the tokens. A normalized
        # form can start with a space (the normalizer sets CJK ideographs apart): its first other character is used.
        self._ascii_firsts = tuple(sorted({needle[0] for needle in self.in_ascii}))
        self._normalized_firsts = tuple(sorted({needle.strip()[0] for needle in self.in_normalized}))

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, *, lowercase: bool) -> AddedTokenSearch | None:
        """The search for a BERT tokenizer's added tokens; None when one of them rules the fast path out."""
        normalizer = tokenizer.normalizer
        if normalizer is None:
            return None
        in_ascii: list[str] = []
        in_normalized: list[str] = []
        in_raw: list[str] = []
        for token in tokenizer.get_added_tokens_decoder().values():
            content = token.content
            # One holding whitespace could match across the spaces the twin splits at.
            if not content.strip() or content != "".join(content.split()):
                return None
            if token.normalized:
                form = normalizer.normalize_str(content)
                # One the normalizer erases is left to the tokenizer (which splits text oddly around it, or
                # panics); an ASCII form is searched for in ASCII text before tabs and newlines become spaces.
                if not form.strip() or (form.isascii() and form != "".join(form.split())):
                    return None
                in_normalized.append(form)
                if form.isascii():
                    in_ascii.append(form)
            elif content.isascii():
                folded = content.lower() if lowercase else content
                in_ascii.append(folded)
                if content.isprintable():
                    in_normalized.append(folded)
                else:
                    in_raw.append(content)
            else:
                in_raw.append(content)
        return cls(in_ascii=in_ascii, in_normalized=in_normalized, in_raw=in_raw)

    def may_be_in_ascii(self, folded: str) -> bool:
        """Whether an added token could match in an ASCII text, given case folded as the model folds it."""
        return any(first in folded for first in self._ascii_firsts) and any(
            needle in folded for needle in self.in_ascii
        )

    def may_be_in(self, text: str, prepared: str, normalize: dict[int, str]) -> bool:
        """Whether an added token could match in a text past ASCII, ``prepared`` by the tables holding ``normalize``."""
        # The prepared text holds the normalized text's characters (and spaces): only when it holds a character
        # of a token is the normalized text made and searched.
        if any(first in prepared for first in self._normalized_firsts):
            normalized = text.translate(normalize)
            if any(needle in normalized for needle in self.in_normalized):
                return True
        return any(needle in text for needle in self.in_raw)


class WordPieceFastPath(BatchEncoder):
    """Encodes through the twin what it can prove the tokenizer would encode the same way; the rest as before."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        lowercase: bool,
        added_tokens: AddedTokenSearch,
        tables: CharacterTables,
    ) -> None:
        super().__init__(tokenizer)
        self._lowercase = lowercase
        self._added_tokens = added_tokens
        self._tables = tables
        self._twin = _twin(tokenizer)
        prefix = getattr(tokenizer.model, "continuing_subword_prefix", "") or ""
        set_apart = bool(prefix) and tables.prepare.get(ord(prefix[0])) == f" {prefix[0]} "
        self._words = WordPieces(tokenizer.model, word_start=prefix if set_apart else None)

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> WordPieceFastPath | None:
        """The fast path for a BertNormalizer + BertPreTokenizer + WordPiece tokenizer; None for any other."""
        normalizer = tokenizer.normalizer
        if not (
            isinstance(normalizer, normalizers.BertNormalizer)
            and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and isinstance(tokenizer.model, models.WordPiece)
        ):
            return None
        lowercase = bool(normalizer.lowercase)
        readings = {code: read_character(tokenizer, chr(code)) for code in LEARNED_CODES}
        if any(readings[code] != bert_ascii_reading(chr(code), lowercase) for code in range(0x80)):
            return None
        added_tokens = AddedTokenSearch.for_tokenizer(tokenizer, lowercase=lowercase)
        if added_tokens is None:
            return None
        tables = CharacterTables(tokenizer, readings)
        return cls(tokenizer, lowercase=lowercase, added_tokens=added_tokens, tables=tables)

    def prepare(self, text: str) -> str | None:
        """What the twin must read to give the tokenizer's tokens for ``text``; None when it cannot be proved."""
        if text.isascii():
            folded = text.lower() if self._lowercase else text
            if self._added_tokens.may_be_in_ascii(folded):
                return None
            prepared = folded.translate(_SPACING)
            # With tab, newline and return now spaces, ASCII text is printable unless it holds a control
            # character: the normalizer drops those, which could join two words or form an added token.
            return prepared if prepared.isprintable() else None
        translated = self._tables.prepared(text)
        if translated is None or self._added_tokens.may_be_in(text, translated, self._tables.normalize):
            return None
        return translated

    def _prepare_all(self, texts: Sequence[str]) -> list[str | None]:
        """Each text prepared, after learning the characters these texts bring; None for the tokenizer's own path."""
        prepared = [self.prepare(text) for text in texts]
        refused = [text for text, ready in zip(texts, prepared, strict=True) if ready is None]
        if refused and self._tables.learn_from(refused):
            prepared = [
                self.prepare(text) if ready is None else ready
                for text, ready in zip(texts, prepared, strict=True)
            ]
        return prepared

    def encode_pairs(self, query: str, passages: Sequence[str]) -> list[Encoding]:
        """``tokenizer.encode_batch_fast([(query, passage), ...])``, the pairs it can prepare through the twin."""
        prepared_query, *prepared = self._prepare_all([query, *passages])
        if prepared_query is None:
            return self._tokenizer.encode_batch_fast([(query, passage) for passage in passages])
        return _route(
            [None if text is None else (prepared_query, text) for text in prepared],
            self._twin.encode_batch_fast,
            lambda slow: self._tokenizer.encode_batch_fast([(query, passages[index]) for index in slow]),
        )

    def encode_texts(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[Encoding]:
        """``tokenizer.encode_batch_fast(texts, add_special_tokens=...)``, the texts it can prepare through the twin."""
        return _route(
            self._prepare_all(texts),
            lambda fast: self._twin.encode_batch_fast(fast, add_special_tokens=add_special_tokens),
            lambda slow: self._tokenizer.encode_batch_fast(
                [texts[index] for index in slow], add_special_tokens=add_special_tokens
            ),
        )

    @property
    def words(self) -> WordPieces:
        return self._words

    def text_ids(self, texts: Sequence[str], max_words: int | None = None) -> list[list[int] | None]:
        """Each text's ids as ``tokenizer.encode(text, add_special_tokens=False)`` gives them untruncated, from
        the words' cached ids; None for a text that must go through the tokenizer itself, or that has more than
        ``max_words`` words (so more tokens than that: each word is one token at least)."""
        prepared = self._prepare_all(texts)
        ready = [text for text in prepared if text is not None]
        ids = iter(self._words.ids_of(ready, max_words))
        return [None if text is None else next(ids) for text in prepared]


def _composable(character: str) -> bool:
    """Whether a character's reading holds wherever it stands in a text.

    NFD (accent stripping) decomposes the whole text and reorders runs of combining marks: safe per character
    only for a starter that decomposes into a starter and marks. A character this Python does not know (category
    Cn) could be a mark of a newer Unicode version than unicodedata's: refused too.
    """
    return unicodedata.category(character) != "Cn" and not unicodedata.combining(
        unicodedata.normalize("NFD", character)[0]
    )


def _twin(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer without normalizer, split at whitespace: the same WordPiece (shared, not copied), truncation,
    padding and pair template. It holds no added tokens: texts that could contain one never reach it."""
    twin = Tokenizer(tokenizer.model)
    twin.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if tokenizer.post_processor is not None:
        twin.post_processor = tokenizer.post_processor
    if tokenizer.truncation is not None:
        twin.enable_truncation(**tokenizer.truncation)
    if tokenizer.padding is not None:
        twin.enable_padding(**tokenizer.padding)
    return twin


def _route[Input: (str, tuple[str, str])](
    prepared: Sequence[Input | None],
    encode_fast: Callable[[list[Input]], list[Encoding]],
    encode_slow: Callable[[list[int]], list[Encoding]],
) -> list[Encoding]:
    """Encodings in input order: prepared inputs through encode_fast, the indices of the others through encode_slow."""
    fast = [item for item in prepared if item is not None]
    if len(fast) == len(prepared):
        return encode_fast(fast)
    slow = iter(encode_slow([index for index, item in enumerate(prepared) if item is None]))
    quick = iter(encode_fast(fast) if fast else [])
    return [next(slow) if item is None else next(quick) for item in prepared]
