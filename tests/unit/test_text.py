"""Unpaired surrogates: replaced for the tokenizer (engine and Cohere trimmer), escaped in JSON answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.engine import CrossEncoder, EngineOptions
from reranker.text import escape_lone_surrogates, has_lone_surrogate, replace_lone_surrogates
from reranker.token_budget import DocumentTrimmer
from tests.models import fixture_model

# Every category, surrogates included (st.text leaves them out by default).
ANY_CHARACTERS = st.characters(categories=["L", "M", "N", "P", "S", "Z", "C"])
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@st.composite
def with_surrogates(draw: st.DrawFn, words: int = 0) -> str:
    """Text with at least one unpaired surrogate; ``words`` plain words first make it long."""
    pieces = ["word"] * words + draw(st.lists(st.text(ANY_CHARACTERS, max_size=12), min_size=1, max_size=6))
    for _ in range(draw(st.integers(1, 3))):
        pieces.insert(draw(st.integers(0, len(pieces))), draw(SURROGATE))
    return " ".join(pieces)


@settings(max_examples=300)
@given(text=st.text(ANY_CHARACTERS))
def test_replacement_keeps_length_and_always_encodes(text: str) -> None:
    replaced = replace_lone_surrogates(text)
    assert len(replaced) == len(text)
    replaced.encode("utf-8")
    assert replaced == "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)
    if not has_lone_surrogate(text):
        assert replaced is text  # the fast path hands the same object back


@settings(max_examples=300)
@given(
    value=st.recursive(
        st.text(ANY_CHARACTERS, max_size=20),
        lambda c: (
            st.lists(c, max_size=4) | st.dictionaries(st.text(ANY_CHARACTERS, max_size=8), c, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_escaped_json_is_the_same_value_and_always_encodes(value: object) -> None:
    text = escape_lone_surrogates(json.dumps(value, ensure_ascii=False))
    text.encode("utf-8")
    assert json.loads(text) == json.loads(json.dumps(value))  # what JSON itself makes of the value


@pytest.fixture(scope="module")
def engine() -> CrossEncoder:
    return CrossEncoder.load(fixture_model("int8"), EngineOptions(window_overlap_tokens=16))


@settings(max_examples=25, deadline=None)
@given(
    query=with_surrogates(),
    passages=st.lists(with_surrogates() | with_surrogates(words=700), min_size=1, max_size=3),
    mode=st.sampled_from(["truncate", "window"]),
)
def test_the_engine_scores_a_surrogate_as_the_replacement_character(
    engine: CrossEncoder, query: str, passages: list[str], mode: str
) -> None:
    scrubbed = engine.score(
        replace_lone_surrogates(query),
        [replace_lone_surrogates(text) for text in passages],
        long_documents=mode,
    )
    report = engine.score(query, passages, long_documents=mode)  # type: ignore[arg-type]
    assert report.scores == scrubbed.scores and report.tokens == scrubbed.tokens


@settings(max_examples=25, deadline=None)
@given(query=with_surrogates(), texts=st.lists(with_surrogates(words=40), min_size=1, max_size=3))
def test_the_cohere_trimmer_cuts_the_callers_text_where_it_cuts_the_replaced_one(
    engine: CrossEncoder, query: str, texts: list[str]
) -> None:
    trimmer = DocumentTrimmer.from_engine(engine)
    cut = trimmer.trim(texts, 20)
    cut_replaced = trimmer.trim([replace_lone_surrogates(text) for text in texts], 20)
    assert cut == [text[: len(short)] for text, short in zip(texts, cut_replaced, strict=True)]
    assert trimmer.window_budget(query, 2) == trimmer.window_budget(replace_lone_surrogates(query), 2)
