"""The WordPiece fast path gives exactly the tokenizer's own encodings, for every text it takes and every text it refuses."""

from __future__ import annotations

import functools
import json
import re
import string
import sys
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Encoding, Tokenizer

from reranker import word_pieces, wordpiece_fast_path
from reranker.model_files import load_tokenizer
from reranker.wordpiece_fast_path import LEARNED_CODES, BatchEncoder, WordPieceFastPath, batch_encoder
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_model

# Every distinct WordPiece tokenizer among the fixtures (MiniLM-L-12 shares the nano's, the 3-logit model the
# multilingual one), plus variants the published models could have: cased, an added plain word, and added tokens
# past ASCII (a custom model's).
VARIANTS = ("uncased", "multilingual", "cased", "added-word", "added-past-ascii")
# Added tokens past ASCII: normalized ones match the normalized text as their content normalizes ("résumé" is
# "resume" in an uncased model, "東京" is " 東  京 "), others the raw text (with a control character, too).
PAST_ASCII_TOKENS = (
    AddedToken("résumé", normalized=True),
    AddedToken("東京", normalized=True),
    AddedToken("ÆON", normalized=True),
    AddedToken("Ωmega", normalized=False),
    AddedToken("x\x07y", normalized=False),
)

_WORDS = st.sampled_from(
    ["the", "Quick", "BROWN", "fox's", "e-mail", "U.S.A.", "3.14", "x" * 120, "[CLS]", "[sep]", "[MASK]x",
     "[UNK]", "##ing", "foo", "FOO", "naïve", "東京", "Ω", "\ufffd", "a\x00b", "c\x0bd", "\x7f", "don't",
     "résumé", "RESUME", "resumes", "Résumé", "ÆON", "æon", "aeon", "Ωmega", "ωMEGA", "x\x07y", "X\x07Y"]
)  # fmt: skip
_ASCII = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80)
# The characters learned at load, others learned on first sight (CJK, Hangul, Greek with its final sigma, Arabic,
# emoji, any code point) and the ones it must refuse (combining marks).
_PAST_ASCII = st.text(
    alphabet=st.sampled_from([chr(code) for code in LEARNED_CODES])
    | st.sampled_from(
        ["\u0301", "\u0308", "Σ", "ς", "東", "ب", "\U0001f600", "\u3000", "\ufeff", "\u2070", "한"]
    )
    | st.characters(exclude_categories=("Cs",)),  # anything else: learned on first sight, or refused
    max_size=20,
)
_GAPS = st.sampled_from([" ", "\t", "\n", "\r\n", "", "  ", "\x0c", *string.punctuation])
_MIXED = st.lists(st.tuples(_WORDS | _ASCII, _GAPS), max_size=30).map(
    lambda parts: "".join(a + b for a, b in parts)
)
TEXTS = (
    _ASCII
    | _MIXED
    | st.lists(st.tuples(_WORDS | _PAST_ASCII, _GAPS), max_size=20).map(
        lambda parts: "".join(a + b for a, b in parts)
    )
)


@functools.cache
def tokenizer(variant: str, max_length: int = 48) -> Tokenizer:
    family = "ms-marco-MultiBERT-L-12" if variant == "multilingual" else MODEL_NAME
    loaded, _ = load_tokenizer(fixture_model("int8", family), max_length)
    if variant == "cased":
        config = json.loads(loaded.to_str())
        config["normalizer"]["lowercase"] = False
        loaded = Tokenizer.from_str(json.dumps(config))
    if variant == "added-word":
        loaded.add_tokens([AddedToken("foo", normalized=True)])
    if variant == "added-past-ascii":
        loaded.add_tokens(list(PAST_ASCII_TOKENS))
    return loaded


def fast_path(variant: str, max_length: int = 48) -> WordPieceFastPath:
    encoder = batch_encoder(tokenizer(variant, max_length))
    assert isinstance(encoder, WordPieceFastPath)
    return encoder


def same(got: list[Encoding], expected: list[Encoding]) -> None:
    assert [encoding.ids for encoding in got] == [encoding.ids for encoding in expected]
    assert [encoding.type_ids for encoding in got] == [encoding.type_ids for encoding in expected]
    assert [encoding.sequence_ids for encoding in got] == [encoding.sequence_ids for encoding in expected]
    assert [len(encoding.overflowing) for encoding in got] == [
        len(encoding.overflowing) for encoding in expected
    ]


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=100, deadline=None)
@given(query=TEXTS, passages=st.lists(TEXTS, min_size=1, max_size=5))
@example(query="what is [SEP]?", passages=["[CLS] a", "plain text, here."])
@example(query="Hello\tWORLD", passages=["a\x01b", "", "   ", "naïve café", "x" * 101])
@example(query="RESUME", passages=["my resume here", "東京 ωMEGA Ωmega", "æon x\x07y", "Résumé: AEON"])
def test_pairs_encode_exactly_as_the_tokenizer_does(variant: str, query: str, passages: list[str]) -> None:
    own = tokenizer(variant)
    same(fast_path(variant).encode_pairs(query, passages), own.encode_batch([(query, p) for p in passages]))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("add_special_tokens", [True, False])
@settings(max_examples=30, deadline=None)
@given(texts=st.lists(TEXTS, max_size=5))
def test_texts_encode_exactly_as_the_tokenizer_does(
    variant: str, add_special_tokens: bool, texts: list[str]
) -> None:
    own = tokenizer(variant)
    got = fast_path(variant).encode_texts(texts, add_special_tokens=add_special_tokens)
    same(got, own.encode_batch(texts, add_special_tokens=add_special_tokens))


shared_fast_path = functools.cache(fast_path)


@functools.cache
def untruncated(variant: str) -> Tokenizer:
    copy = Tokenizer.from_str(tokenizer(variant).to_str())
    copy.no_truncation()
    return copy


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(TEXTS, max_size=6))
@example(texts=["the the THE", "", "   ", "x" * 120 + " foo", "a\x1cb c\x1fd", "東京 naïve"])
def test_text_ids_are_the_tokenizers_untruncated_ids(variant: str, texts: list[str]) -> None:
    # Given texts past the 48-token limit among others, through a fast path whose word cache is shared by examples
    path = shared_fast_path(variant)
    got = path.text_ids(texts)
    expected = untruncated(variant).encode_batch(texts, add_special_tokens=False)
    # Then each text it takes has the tokenizer's ids, whole, and the others are left to the tokenizer
    for text, ids, encoding in zip(texts, got, expected, strict=True):
        assert ids is None or ids == encoding.ids, text
    assert [ids is None for ids in got] == [path.prepare(text) is None for text in texts]


@settings(max_examples=30, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_words_past_the_cache_bound_are_asked_again_with_the_same_ids(texts: list[str]) -> None:
    # Given a word cache that holds 3 words at most
    words = word_pieces.WordPieces(tokenizer("uncased").model, word_start="##", limit=3)
    path = shared_fast_path("uncased")
    path.text_ids(texts)  # the characters these texts bring, learned
    prepared = [text for text in map(path.prepare, texts) if text is not None]
    # When it gives the ids of texts with more words than that, twice
    first, again = words.ids_of(prepared), words.ids_of(prepared)
    # Then both times they are the twin's, and it keeps no more than its bound
    expected = [untruncated("uncased").encode(text, add_special_tokens=False).ids for text in texts]
    expected = [ids for text, ids in zip(texts, expected, strict=True) if path.prepare(text) is not None]
    assert first == again == expected
    assert len(words) <= 3


@pytest.mark.parametrize("word_start", ["##", None])
def test_words_of_several_pieces_are_cached_where_their_first_piece_can_be_told(
    word_start: str | None,
) -> None:
    # Given a text whose words split into several pieces, one of them past the model's 100 characters a word
    text = "zzyzx unaffable " + "x" * 120 + " foo"
    expected = untruncated("uncased").encode(text, add_special_tokens=False).ids
    assert len(expected) > 4
    words = word_pieces.WordPieces(tokenizer("uncased").model, word_start=word_start)
    # When its ids are asked twice
    first, again = words.ids_of([text]), words.ids_of([text])
    # Then they are the tokenizer's, and its words are cached only where a word's first piece is known apart
    assert first == again == [expected]
    assert len(words) == (4 if word_start else 0)
    assert words.ids_of(["foo zzyzx"]) == [
        untruncated("uncased").encode("foo zzyzx", add_special_tokens=False).ids
    ]


def test_texts_of_more_words_than_the_room_are_left_to_the_tokenizer_unread() -> None:
    words = word_pieces.WordPieces(tokenizer("uncased").model, word_start="##")
    assert words.ids_of(["one two three", "one two", "unaffable"], max_words=2) == [
        None,
        untruncated("uncased").encode("one two", add_special_tokens=False).ids,
        untruncated("uncased").encode("unaffable", add_special_tokens=False).ids,
    ]
    assert len(words) == 3  # one, two and unaffable: the longer text was not read


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        ("Plain ASCII, with punctuation!", True),
        ("naïve café, “quoted” — dashed…", True),  # learned from the tokenizer when the model loads
        ("soft\u00adhyphen and\u00a0no-break space", True),
        (
            "東京タワー, 한국어, ελληνικά ΣΣ, русский, العربية 😀",
            True,
        ),  # learned the first time they are seen
        ("Σ\u0301", False),  # a combining mark: accent stripping decomposes and reorders across characters
        ("x\U0001d16d\U0001d165y", False),  # two spacing marks (Mc) that NFD swaps: never read one by one
        ("e\u0301", False),  # a combining mark: accent stripping decomposes and reorders across characters
        ("a\x00b", False),  # the normalizer drops control characters, which could join what they separate
        ("before [SEP] after", False),  # an added token is split out before normalization
        ("before [sep] after", False),  # ... and lowercase spellings could match a normalized added token
        ("tabs\tand\r\nnewlines", True),
    ],
)
def test_what_the_fast_path_takes(text: str, taken: bool) -> None:
    encoder = fast_path("uncased")
    same(encoder.encode_texts([text], add_special_tokens=True), encoder.tokenizer.encode_batch([text]))
    assert (encoder.prepare(text) is not None) is taken


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_learned_character_alone_and_among_others(variant: str) -> None:
    characters = [chr(code) for code in LEARNED_CODES]
    texts = [f"x{character}y {character} {character}{character}q" for character in characters]
    texts.append("".join(characters))
    own = tokenizer(variant, 512)
    same(
        fast_path(variant, 512).encode_texts(texts, add_special_tokens=False),
        own.encode_batch(texts, add_special_tokens=False),
    )


def test_a_tokenizer_that_reads_ascii_differently_gets_no_fast_path() -> None:
    config = json.loads(tokenizer("uncased").to_str())
    config["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            config["normalizer"],
            {"type": "Replace", "pattern": {"String": "-"}, "content": " "},
        ],
    }
    assert type(batch_encoder(Tokenizer.from_str(json.dumps(config)))) is BatchEncoder


def test_learning_stops_at_its_bound_and_the_rest_takes_the_tokenizers_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = batch_encoder(load_tokenizer(fixture_model("int8"), 512)[0])
    assert isinstance(encoder, WordPieceFastPath)
    monkeypatch.setattr(wordpiece_fast_path, "MAX_LEARNED_CHARACTERS", len(encoder._tables._seen) + 2)
    same(encoder.encode_texts(["東京"], add_special_tokens=True), encoder.tokenizer.encode_batch(["東京"]))
    assert encoder.prepare("東京") is not None  # two new characters: room for both
    texts = ["東京", "大阪", "東京大阪"]
    same(encoder.encode_texts(texts, add_special_tokens=True), encoder.tokenizer.encode_batch(texts))
    assert encoder.prepare("大阪") is None  # no room left: the tokenizer's own path


def calls_during(action: Callable[[], object]) -> int:
    """Python and C functions called while action runs: a count of its work that no other load on the machine sways."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def test_a_new_character_costs_the_same_however_many_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    # Learning used to compile a character class of every known character again: once about 3,900 were known, a
    # request bringing one new character paid about 5 ms for it.
    compiles = 0
    compile_pattern = re.compile

    def counted_compile(*args: object, **kwargs: object) -> object:
        nonlocal compiles
        compiles += 1
        return compile_pattern(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(re, "compile", counted_compile)
    encoder = fast_path("uncased", 512)

    def request_bringing(character: str) -> int:
        text = f"a {character}b"
        got: list[Encoding] = []
        calls = calls_during(lambda: got.extend(encoder.encode_texts([text], add_special_tokens=True)))
        same(got, encoder.tokenizer.encode_batch([text]))
        assert encoder.prepare(text) is not None
        return calls

    few_known = request_bringing("\u4e01")
    # 4,000 CJK ideographs a code point apart: as a character class, 4,000 ranges.
    scattered = "".join(chr(0x4E00 + 2 * index) for index in range(4000))
    encoder.encode_texts([scattered], add_special_tokens=False)
    assert request_bringing(chr(0x4E00 + 2 * 4000 + 1)) == few_known
    for index in range(100):  # a hundred requests, each learning one character
        request_bringing(chr(0x4E00 + 2 * index + 3))
    assert compiles == 0


def test_only_bert_wordpiece_pipelines_get_the_fast_path() -> None:
    kinds = {
        family: type(batch_encoder(load_tokenizer(fixture_model("int8", family), 512)[0]))
        for family in FAMILY_NAMES
    }
    assert kinds == {
        family: BatchEncoder if family == "rank-T5-flan" else WordPieceFastPath for family in FAMILY_NAMES
    }


def test_an_added_token_holding_a_space_turns_the_fast_path_off() -> None:
    spaced, _ = load_tokenizer(fixture_model("int8"), 512)
    spaced.add_tokens([AddedToken("new york", normalized=True)])
    assert type(batch_encoder(spaced)) is BatchEncoder


@pytest.mark.parametrize(("variant", "ascii_match"), [("uncased", True), ("cased", False)])
def test_a_normalized_added_token_past_ascii_matches_as_the_normalizer_reads_it(
    variant: str, ascii_match: bool
) -> None:
    # Uncased, "résumé" normalizes to "resume", which ASCII text can hold ("RESUME"); cased it stays "résumé".
    own = Tokenizer.from_str(tokenizer(variant).to_str())
    own.add_tokens([AddedToken("résumé", normalized=True)])
    encoder = batch_encoder(own)
    assert isinstance(encoder, WordPieceFastPath)
    texts = ["RESUME", "my resume here", "resumes", "Résumé", "RÉSUMÉ, naïve", "a résumé, a CV", "my CV here"]
    for add_special_tokens in (True, False):
        same(
            encoder.encode_texts(texts, add_special_tokens=add_special_tokens),
            own.encode_batch(texts, add_special_tokens=add_special_tokens),
        )
    for query in ("RESUME", "what is a resume?", "what is a CV?", "a résumé, " * 30):
        same(encoder.encode_pairs(query, texts), own.encode_batch([(query, text) for text in texts]))
    assert (encoder.prepare("RESUME") is None) is ascii_match
    assert (encoder.prepare("my resume here") is None) is ascii_match
    assert encoder.prepare("a résumé, a CV") is None
    assert encoder.prepare("my CV here") is not None and encoder.prepare("naïve CV") is not None


def test_an_added_token_the_normalizer_erases_turns_the_fast_path_off() -> None:
    erased, _ = load_tokenizer(fixture_model("int8"), 512)
    # A zero-width space, which the normalizer drops (the tokenizer then splits text oddly, or panics).
    erased.add_tokens([AddedToken("\u200b", normalized=True)])
    assert type(batch_encoder(erased)) is BatchEncoder


def test_a_truncated_pair_keeps_the_query_and_the_passage_head() -> None:
    query, passage = "Which river?", "The Thames, a river, flows east. " * 40
    got = fast_path("uncased").encode_pairs(query, [passage])[0]
    assert got.ids == tokenizer("uncased").encode(query, passage).ids
    assert len(got.ids) == 48 and got.overflowing


@pytest.mark.parametrize("variant", ["uncased", "cased"])
def test_every_character_of_the_basic_multilingual_plane(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every code point outside the surrogates, alone and between neighbours it could merge with, learned or
    # refused: the fast path's tokens are the tokenizer's for each.
    monkeypatch.setattr(wordpiece_fast_path, "MAX_LEARNED_CHARACTERS", 0x10000)
    encoder = batch_encoder(Tokenizer.from_str(tokenizer(variant, 512).to_str()))
    characters = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    texts = [f"x{character}y {character}{character} É{character}" for character in characters]
    same(
        encoder.encode_texts(texts, add_special_tokens=False),
        encoder.tokenizer.encode_batch(texts, add_special_tokens=False),
    )
