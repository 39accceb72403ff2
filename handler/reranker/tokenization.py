"""Text -> model inputs: (query, passage) pairs, the pre-cut of very long passages, windows in the pair template."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from tokenizers import Encoding, Tokenizer

from reranker.text import replace_lone_surrogates
from reranker.word_pieces import WordPieces
from reranker.wordpiece_fast_path import BatchEncoder, WordPieceFastPath, batch_encoder

LongDocuments = Literal["truncate", "window"]

# A passage longer than this many characters per token of the limit is cut at a space before tokenizing (only
# when that provably keeps the same tokens, see precut_limit): at most 512 tokens of it are ever used.
PRECUT_CHARS_PER_TOKEN = 12
# Tokenizing is checked against should_stop() between chunks. The first chunk has this many characters (about
# 10-30 ms of work here; requests of up to ~100 MS MARCO passages are one chunk); later ones are sized from the
# rate measured so far to take about TOKENIZE_CHECK_SECONDS, so the interval stays short on a slow or busy vCPU
# too: far under the half of DEADLINE_MARGIN_MS that must be left when the function answers.
TOKENIZE_FIRST_CHUNK_CHARS = 128 * 1024
TOKENIZE_CHECK_SECONDS = 0.025
TOKENIZE_CHUNK_CHARS_BOUNDS = (4 * 1024, 1024 * 1024)
# A passage of more characters than this per token of room beside the query is encoded as a pair straight away,
# not built from its words' ids: it almost surely overflows (English runs 4-5 characters a token), and reading
# its words first would be wasted (measured: 10 ms of 200 on 1000 passages of 3,900 characters).
BUILT_PAIR_CHARS_PER_TOKEN = 6


class WindowsUnsupported(Exception):
    """Windowed scoring cannot apply to this model (its tokenizer has no usable pair template or no room)."""

    def __init__(self, mode: str, reason: str) -> None:
        super().__init__(f"{mode}: {reason}")
        self.mode = mode
        self.reason = reason


@dataclass(slots=True)
class PairInput:
    """One model run to make: a (query, passage or window) encoding and the passage it scores."""

    passage: int
    ids: list[int]
    type_ids: list[int]


@dataclass(frozen=True)
class TemplatePart:
    """One element of the pair template: a special token (slot None) or the query ("A") / passage ("B")."""

    slot: Literal["A", "B"] | None
    token_id: int
    type_id: int


@dataclass(frozen=True)
class PairTemplate:
    """The tokenizer's own pair layout, e.g. ``[CLS] $A [SEP] $B [SEP]`` (BERT) or ``$A </s> $B </s>`` (T5)."""

    parts: tuple[TemplatePart, ...]

    @property
    def special_tokens(self) -> int:
        return sum(1 for part in self.parts if part.slot is None)

    def build(self, query_ids: Sequence[int], passage_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        type_ids: list[int] = []
        for part in self.parts:
            if part.slot is None:
                ids.append(part.token_id)
                type_ids.append(part.type_id)
                continue
            tokens = query_ids if part.slot == "A" else passage_ids
            ids.extend(tokens)
            type_ids.extend([part.type_id] * len(tokens))
        return ids, type_ids


def tokenizer_text(text: str) -> str:
    """The one place every query and passage passes on its way into the tokenizer.

    An unpaired UTF-16 surrogate (half an emoji left by a chunker that cuts by UTF-16 length) is read as
    U+FFFD: the tokenizer cannot take it, and the replacement keeps the text's length, so offsets still
    cut the caller's original text.
    """
    return replace_lone_surrogates(text)


def read_pair_template(tokenizer: Tokenizer) -> PairTemplate | None:
    """The pair template the tokenizer's post-processor applies, read off the encoding of a probe pair.

    sequence_ids tells which positions come from the first text, the second, or the template (None); the
    template is checked to rebuild a second probe exactly, so an exotic post-processor gives None, never a
    wrong layout.
    """
    truncation = tokenizer.truncation
    tokenizer.no_truncation()  # the probes must come out whole, whatever the limit
    try:
        return _probe_pair_template(tokenizer)
    finally:
        if truncation is not None:
            tokenizer.enable_truncation(**truncation)


def _probe_pair_template(tokenizer: Tokenizer) -> PairTemplate | None:
    probe = tokenizer.encode("a", "b")
    parts: list[TemplatePart] = []
    for token_id, type_id, sequence in zip(probe.ids, probe.type_ids, probe.sequence_ids, strict=True):
        if sequence is None:
            parts.append(TemplatePart(None, token_id, type_id))
            continue
        slot: Literal["A", "B"] = "A" if sequence == 0 else "B"
        if parts and parts[-1].slot == slot:
            if parts[-1].type_id != type_id:
                return None
            continue
        parts.append(TemplatePart(slot, -1, type_id))
    template = PairTemplate(tuple(parts))
    if [part.slot for part in parts if part.slot is not None] != ["A", "B"]:
        return None
    check = tokenizer.encode("a b c", "d e", add_special_tokens=True)
    query = tokenizer.encode("a b c", add_special_tokens=False).ids
    passage = tokenizer.encode("d e", add_special_tokens=False).ids
    if template.build(query, passage) != (check.ids, check.type_ids):
        return None
    return template


def precut_limit(tokenizer: Tokenizer, max_length: int) -> int | None:
    """Characters of a passage worth tokenizing, or None when cutting text could change the kept tokens.

    With BERT's normalizer (per character), pre-tokenizer (splits at whitespace) and WordPiece (per word),
    the tokens of text cut at a space are a prefix of the tokens of the whole text. Other pipelines (T5's
    NFKC + Metaspace + Unigram among them) are tokenized whole.
    """
    pipeline = (type(tokenizer.normalizer).__name__, type(tokenizer.pre_tokenizer).__name__)
    if pipeline != ("BertNormalizer", "BertPreTokenizer") or type(tokenizer.model).__name__ != "WordPiece":
        return None
    if any(" " in token.content for token in tokenizer.get_added_tokens_decoder().values()):
        return None
    return max_length * PRECUT_CHARS_PER_TOKEN


def window_geometry(
    query_tokens: int, max_length: int, overlap_tokens: int, *, special_tokens: int
) -> tuple[int, int]:
    """(room, step): passage tokens per window beside the query and the template's special tokens, and the stride.

    The query keeps at most half the limit; neighbouring windows share up to ``overlap_tokens``.
    """
    room = max_length - min(query_tokens, max_length // 2) - special_tokens
    return room, max(1, room - min(overlap_tokens, room // 2))


def chunks(
    lengths: Sequence[int], cap: int | None, should_stop: Callable[[], bool] | None
) -> Iterator[tuple[int, int]]:
    """(start, end) slices of the texts whose character counts are ``lengths`` (each counted at most ``cap``).

    The caller tokenizes each slice before asking for the next; the time that takes sizes the next slice.
    should_stop() is asked before every slice but the first, so one slice of work is always done and a
    request of one slice never reads the clock here.
    """
    low, high = TOKENIZE_CHUNK_CHARS_BOUNDS
    budget = TOKENIZE_FIRST_CHUNK_CHARS
    start = 0
    while start < len(lengths):
        if start and should_stop is not None and should_stop():
            return
        end, chars = start, 0
        while end < len(lengths) and (end == start or chars < budget):
            chars += lengths[end] if cap is None else min(lengths[end], cap)
            end += 1
        started = time.perf_counter()
        yield start, end
        rate = chars / max(time.perf_counter() - started, 1e-4)
        budget = min(high, max(low, int(rate * TOKENIZE_CHECK_SECONDS)))
        start = end


@dataclass(frozen=True)
class Encoded:
    """The model runs for the passages tokenized, and how many passages do not fit in them whole."""

    runs: list[PairInput]
    truncated: int
    tokenized: int  # passages tokenized before should_stop() said stop (all of them, normally)


class PairTokenizer:
    """A model's tokenizer as the engine uses it: truncated pairs, pre-cut long passages, windows."""

    def __init__(
        self, tokenizer: Tokenizer, max_length: int, *, overlap_tokens: int = 64, max_windows: int = 8
    ) -> None:
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.overlap_tokens = overlap_tokens
        self.max_windows = max_windows
        self.precut_chars = precut_limit(tokenizer, max_length)
        self.template = read_pair_template(tokenizer)
        self._batches = batch_encoder(tokenizer)
        self._whole_passage_batches: BatchEncoder | None = None
        # Untruncated ids of single texts, where the encoder can give them without the tokenizer (WordPiece).
        self._text_ids: Callable[[Sequence[str], int | None], list[list[int] | None]] | None = (
            self._batches.text_ids if isinstance(self._batches, WordPieceFastPath) else None
        )
        truncation = tokenizer.truncation
        self._limit: int | None = None if truncation is None else int(truncation["max_length"])

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def word_pieces(self) -> WordPieces | None:
        """The cache of words' ids pairs are built from, where the tokenizer has the WordPiece fast path."""
        return self._batches.words if isinstance(self._batches, WordPieceFastPath) else None

    def passage_batches(self) -> BatchEncoder:
        """Batch calls of a tokenizer copy that keeps every token of a passage, made the first time it is needed."""
        if self._whole_passage_batches is None:
            copy = Tokenizer.from_str(self._tokenizer.to_str())
            copy.no_truncation()
            self._whole_passage_batches = batch_encoder(copy)
        return self._whole_passage_batches

    def whole_pair_lengths(self, query: str, passages: Sequence[str]) -> list[int]:
        """Tokens of each (query, passage) pair in the pair template with nothing truncated."""
        query = tokenizer_text(query)
        encodings = self.passage_batches().encode_pairs(
            query, [tokenizer_text(passage) for passage in passages]
        )
        return [len(encoding.ids) for encoding in encodings]

    def encode(
        self,
        query: str,
        passages: Sequence[str],
        mode: LongDocuments,
        should_stop: Callable[[], bool] | None = None,
    ) -> Encoded:
        """The model runs to make (a window run per window of long passages in window mode)."""
        query = tokenizer_text(query)
        runs: list[PairInput] = []
        overflowing: list[int] = []
        query_ids = self._query_ids(query)
        # Each chunk's encodings become runs inside its own deadline-checked slice: turning them into Python
        # lists costs as much as a third of the tokenizing for long passages.
        for start, end in chunks([len(text) for text in passages], self.precut_chars, should_stop):
            chunk_runs, chunk_overflowing = self._chunk_runs(query, query_ids, passages, start, end)
            runs += chunk_runs
            overflowing += chunk_overflowing
        if mode == "truncate" or not overflowing:
            return Encoded(runs, len(overflowing), len(runs))
        tokenized = len(runs)
        window_runs, cut = self.windows(query, passages, overflowing, should_stop)
        # A long passage whose windows were not built (should_stop) is left without runs: unscored.
        long_passages = set(overflowing)
        runs = [run for run in runs if run.passage not in long_passages] + window_runs
        return Encoded(runs, cut, tokenized)

    def _query_ids(self, query: str) -> list[int] | None:
        """The query's ids, for pairs built in the template from ids (None: every pair through the tokenizer)."""
        if self._text_ids is None or self.template is None:
            return None
        return self._text_ids([query], None)[0]

    def _chunk_runs(
        self, query: str, query_ids: list[int] | None, passages: Sequence[str], start: int, end: int
    ) -> tuple[list[PairInput], list[int]]:
        """The runs of passages[start:end] in order, and which of them overflow: pairs built from ids where
        they can be (_pairs_from_ids), the others encoded as pairs by the tokenizer."""
        built = {} if query_ids is None else self._pairs_from_ids(query_ids, passages, start, end)
        if len(built) == end - start:
            return [PairInput(index, *built[index]) for index in range(start, end)], []
        rest = [index for index in range(start, end) if index not in built]
        encodings = iter(self._encode_chunk(query, [passages[index] for index in rest]))
        runs: list[PairInput] = []
        overflowing: list[int] = []
        for index in range(start, end):
            if index in built:
                runs.append(PairInput(index, *built[index]))
                continue
            encoding = next(encodings)
            runs.append(PairInput(index, encoding.ids, encoding.type_ids))
            if encoding.overflowing:
                overflowing.append(index)
        return runs, overflowing

    def _pairs_from_ids(
        self, query_ids: list[int], passages: Sequence[str], start: int, end: int
    ) -> dict[int, tuple[list[int], list[int]]]:
        """(ids, type ids) of each pair of passages[start:end] built in the template from the query's ids and the
        passage's, where it fits whole: the tokenizer encodes each text of a pair alone and truncates nothing
        that fits, so these are its ids. Passages of more than BUILT_PAIR_CHARS_PER_TOKEN characters a token of
        room beside the query, or of more words than that room, are left to the tokenizer without being read."""
        template, text_ids = self.template, self._text_ids
        if template is None or text_ids is None:
            return {}
        room = None if self._limit is None else self._limit - template.special_tokens - len(query_ids)
        if room is not None and room < 0:
            return {}
        longest = self.precut_chars
        if room is not None:
            by_room = room * BUILT_PAIR_CHARS_PER_TOKEN
            longest = by_room if longest is None else min(longest, by_room)
        short = [index for index in range(start, end) if longest is None or len(passages[index]) <= longest]
        built: dict[int, tuple[list[int], list[int]]] = {}
        for index, ids in zip(
            short, text_ids([tokenizer_text(passages[index]) for index in short], room), strict=True
        ):
            if ids is not None and (room is None or len(ids) <= room):
                built[index] = template.build(query_ids, ids)
        return built

    def encode_pairs(
        self, query: str, passages: Sequence[str], should_stop: Callable[[], bool] | None = None
    ) -> list[Encoding]:
        """Truncated (query, passage) encodings of a prefix of passages (all unless should_stop() said stop).

        Passages go to the tokenizer in chunks of about TOKENIZE_CHECK_SECONDS of work (see chunks), with a
        should_stop() check between chunks, so a huge request cannot spend the deadline margin in the tokenizer.
        """
        return [
            encoding
            for _, encodings in self._chunk_encodings(query, passages, should_stop)
            for encoding in encodings
        ]

    def _chunk_encodings(
        self, query: str, passages: Sequence[str], should_stop: Callable[[], bool] | None
    ) -> Iterator[tuple[int, list[Encoding]]]:
        """(first passage index, encodings) per chunk; the caller's work on a chunk counts toward its time."""
        for start, end in chunks([len(text) for text in passages], self.precut_chars, should_stop):
            yield start, self._encode_chunk(query, passages[start:end])

    def _encode_chunk(self, query: str, passages: Sequence[str]) -> list[Encoding]:
        """Very long passages are cut first when that cannot matter.

        Truncation keeps the query whole and the first (limit - query) passage tokens whenever the query is
        under half the limit, so a cut passage that still overflows yields exactly the tokens of the whole
        passage. Cuts that do not overflow, or come with a long query, are encoded again from the whole text.
        """
        texts = [tokenizer_text(text) for text in passages]
        whole = list(texts)
        cut: list[int] = []
        if self.precut_chars is not None:
            for index, text in enumerate(texts):
                space = text.rfind(" ", 0, self.precut_chars) if len(text) > self.precut_chars else -1
                if space > 0:
                    texts[index] = text[:space]
                    cut.append(index)
        # _fast: no character offsets (we never map tokens back to text); same ids, about 15 % quicker.
        encodings = self._batches.encode_pairs(query, texts)
        specials = self.template.special_tokens if self.template is not None else 3
        half = (self.max_length - specials) // 2
        redo = [
            index
            for index in cut
            if not encodings[index].overflowing or encodings[index].sequence_ids.count(0) >= half
        ]
        if redo:
            again = self._batches.encode_pairs(query, [whole[index] for index in redo])
            for index, encoding in zip(redo, again, strict=True):
                encodings[index] = encoding
        return encodings

    def window_room(self, query: str) -> tuple[list[int], PairTemplate, int, int]:
        """The query's tokens beside each window, the template, and (room, step) of the window geometry."""
        template = self.template
        if template is None:
            raise WindowsUnsupported(
                "window", "the model's tokenizer has no (query, passage) pair template to build windows with"
            )
        query_ids = self._tokenizer.encode(tokenizer_text(query), add_special_tokens=False).ids
        query_ids = query_ids[: self.max_length // 2]
        room, step = window_geometry(
            len(query_ids), self.max_length, self.overlap_tokens, special_tokens=template.special_tokens
        )
        if room < 1:
            raise WindowsUnsupported(
                "window", f"the model's token limit ({self.max_length}) leaves no room for a passage window"
            )
        return query_ids, template, room, step

    def windows(
        self,
        query: str,
        passages: Sequence[str],
        indices: list[int],
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[list[PairInput], int]:
        """Overlapping windows of passages[i] for i in indices, each beside the query in the pair template.

        Returns the runs and how many passages had more windows than max_windows (their tail is not scored).
        """
        query_ids, template, room, step = self.window_room(query)
        runs: list[PairInput] = []
        cut = 0
        for start, end in chunks([len(passages[index]) for index in indices], None, should_stop):
            chunk = indices[start:end]
            encodings = self.passage_batches().encode_texts(
                [tokenizer_text(passages[index]) for index in chunk], add_special_tokens=False
            )
            for index, encoding in zip(chunk, encodings, strict=True):
                tokens = encoding.ids
                starts = list(range(0, max(1, len(tokens) - room + step), step))
                if len(starts) > self.max_windows:
                    starts = starts[: self.max_windows]
                    cut += 1
                for first in starts:
                    ids, type_ids = template.build(query_ids, tokens[first : first + room])
                    runs.append(PairInput(index, ids, type_ids))
        return runs, cut
