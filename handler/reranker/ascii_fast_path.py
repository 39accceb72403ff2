"""ASCII text through a BERT WordPiece tokenizer in about a third of the time, with exactly its own tokens.

In Rust, BertNormalizer and BertPreTokenizer keep a character alignment through every step, and on one vCPU
that is most of the tokenizing time. On ASCII text both come down to two C-speed string calls: ``str.lower``
(when the normalizer lowercases) and one ``str.translate`` that reads tab, newline and return as spaces and sets
every ASCII punctuation mark apart with spaces. A twin of the tokenizer without the normalizer and with a plain
whitespace split then runs the same WordPiece, truncation and pair template.

A text goes through the tokenizer itself when the equivalence is not plain: it is not ASCII, it holds an ASCII
control character (the normalizer drops those, which could join two words or form an added token), or an added
token such as ``[SEP]`` could match in it (added tokens are split out before normalization).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

from tokenizers import Encoding, Tokenizer, models, normalizers, pre_tokenizers

# ASCII characters in Unicode category Cc that BertNormalizer drops (tab, newline and return are whitespace).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What BertNormalizer (whitespace) and BertPreTokenizer (whitespace, punctuation) make of the rest of ASCII.
_SPACING = str.maketrans(
    {"\t": " ", "\n": " ", "\r": " "} | {mark: f" {mark} " for mark in string.punctuation}
)


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
    """The ASCII fast path where the tokenizer's pipeline allows it, else the tokenizer's own batch calls."""
    return AsciiFastPath.for_tokenizer(tokenizer) or BatchEncoder(tokenizer)


class AsciiFastPath(BatchEncoder):
    """Encodes through the twin what it can prove the tokenizer would encode the same way; the rest as before."""

    def __init__(self, tokenizer: Tokenizer, *, lowercase: bool, added_tokens: Sequence[str]) -> None:
        super().__init__(tokenizer)
        self._lowercase = lowercase
        self._added_tokens = tuple(added_tokens)
        self._twin = _twin(tokenizer)

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> AsciiFastPath | None:
        """The fast path for a BertNormalizer + BertPreTokenizer + WordPiece tokenizer; None for any other."""
        normalizer = tokenizer.normalizer
        if not (
            isinstance(normalizer, normalizers.BertNormalizer)
            and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and isinstance(tokenizer.model, models.WordPiece)
        ):
            return None
        lowercase = bool(normalizer.lowercase)
        contents = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
        if any(not content.strip() or content != "".join(content.split()) for content in contents):
            return None  # an added token holding whitespace could match across the spaces the twin splits at
        # Only an ASCII added token can match ASCII text. Lowercased contents find every token that could match
        # the raw text or the lowercased one (a conservative test: a false alarm only means the slow path).
        ascii_contents = sorted(
            {content.lower() if lowercase else content for content in contents if content.isascii()}
        )
        return cls(tokenizer, lowercase=lowercase, added_tokens=ascii_contents)

    def prepare(self, text: str) -> str | None:
        """What the twin must read to give the tokenizer's tokens for ``text``; None when it cannot be proved."""
        if not text.isascii() or _CONTROL.search(text) is not None:
            return None
        folded = text.lower() if self._lowercase else text
        if any(content in folded for content in self._added_tokens):
            return None
        return folded.translate(_SPACING)

    def encode_pairs(self, query: str, passages: Sequence[str]) -> list[Encoding]:
        """``tokenizer.encode_batch_fast([(query, passage), ...])``, the ASCII pairs through the twin."""
        prepared_query = self.prepare(query)
        if prepared_query is None:
            return self._tokenizer.encode_batch_fast([(query, passage) for passage in passages])
        prepared = [self.prepare(passage) for passage in passages]
        return _route(
            [None if text is None else (prepared_query, text) for text in prepared],
            self._twin.encode_batch_fast,
            lambda slow: self._tokenizer.encode_batch_fast([(query, passages[index]) for index in slow]),
        )

    def encode_texts(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[Encoding]:
        """``tokenizer.encode_batch_fast(texts, add_special_tokens=...)``, the ASCII texts through the twin."""
        return _route(
            [self.prepare(text) for text in texts],
            lambda fast: self._twin.encode_batch_fast(fast, add_special_tokens=add_special_tokens),
            lambda slow: self._tokenizer.encode_batch_fast(
                [texts[index] for index in slow], add_special_tokens=add_special_tokens
            ),
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
