"""Cutting documents to a token budget with the model's own tokenizer (Cohere's max_tokens / max_chunks_per_doc)."""

from __future__ import annotations

from collections.abc import Sequence

from reranker.engine import CrossEncoder
from reranker.errors import ModeNotApplicable
from reranker.tokenization import PairTokenizer, WindowsUnsupported, tokenizer_text


class DocumentTrimmer:
    """Cuts a document at a word boundary so it holds at most N model tokens.

    v2 ``max_tokens_per_doc`` is that cut. v1 ``max_chunks_per_doc`` is the cut that leaves exactly as many
    tokens as that many overlapping windows cover (the engine's own window geometry: the query and the
    tokenizer's pair-template special tokens beside each window, ``window_overlap_tokens`` shared).
    """

    def __init__(self, pairs: PairTokenizer, model: str) -> None:
        self._pairs = pairs
        self._model = model
        # The tokenizer itself, not the fast path's twin: offsets must cut the raw text.
        self._tokenizer = pairs.passage_batches().tokenizer
        self.max_length = pairs.max_length

    @classmethod
    def from_engine(cls, engine: CrossEncoder) -> DocumentTrimmer:
        """The engine's own untruncated tokenizer and window settings: no second load of tokenizer.json."""
        return cls(engine.tokenization, engine.name)

    def window_budget(self, query: str, chunks: int) -> int:
        """How many passage tokens ``chunks`` windows cover beside this query (the engine's geometry).

        Raises ModeNotApplicable when the model cannot be scored in windows.
        """
        try:
            _, _, room, step = self._pairs.window_room(query)
        except WindowsUnsupported as exc:
            raise ModeNotApplicable(f'long_documents "{exc.mode}"', self._model, exc.reason) from exc
        return room + (chunks - 1) * step

    def trim(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut to at most ``max_tokens`` tokens; texts that surely fit are not even tokenized."""
        trimmed = list(texts)
        # A token covers at least one character, so a text of at most max_tokens characters fits.
        long_indices = [index for index, text in enumerate(texts) if len(text) > max_tokens]
        if not long_indices:
            return trimmed
        # Same length as the caller's text (one U+FFFD per surrogate), so offsets cut the original.
        encodings = self._tokenizer.encode_batch(
            [tokenizer_text(texts[index]) for index in long_indices], add_special_tokens=False
        )
        for index, encoding in zip(long_indices, encodings, strict=True):
            if len(encoding.ids) <= max_tokens:
                continue
            cut = max_tokens  # the first token that does not fit; back off to its word's first token
            word_ids = encoding.word_ids
            while cut > 0 and word_ids[cut] is not None and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            if cut == 0:  # one word longer than the budget: cut inside it
                cut = max_tokens
            trimmed[index] = texts[index][: encoding.offsets[cut][0]].rstrip()
        return trimmed
