"""Score parity with the FlashRank library run on the same model files, for every fixture family.

fp32 is batch-invariant, so there FlashRank's one padded batch is the exact target. int8 models quantize
activations with one scale per batch tensor, so FlashRank's score for a passage moves with its neighbours;
there the target is FlashRank's score for the passage sent alone, and our score must never move.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from flashrank import Ranker, RerankRequest

from reranker.engine import CrossEncoder, EngineOptions
from tests.models import FAMILY_NAMES, MODEL_NAME, fixture_cache_dir, fixture_model
from tools.fixture_model.corpus import CorpusGenerator, MultilingualCorpusGenerator

TOLERANCE = 1e-5

pytestmark = pytest.mark.xdist_group("parity")


@dataclass(frozen=True)
class Case:
    """One fixture family and how much of the corpus to check it on (the MiniLM-L-12 shape is costly)."""

    name: str
    multilingual: bool = False
    fp32_requests: int = 25
    int8_requests: int = 8
    max_passages: int = 30
    max_length: int = 512

    def corpus(self, seed: int) -> CorpusGenerator:
        return MultilingualCorpusGenerator(seed) if self.multilingual else CorpusGenerator(seed)

    def encoder(self, kind: str) -> CrossEncoder:
        return CrossEncoder.load(fixture_model(kind, self.name), EngineOptions(max_length=self.max_length))

    def ranker(self, kind: str) -> Ranker:
        cache = str(fixture_cache_dir(kind, self.name))
        return Ranker(model_name=self.name, cache_dir=cache, max_length=self.max_length, log_level="WARNING")


CASES = {
    MODEL_NAME: Case(MODEL_NAME, fp32_requests=200, int8_requests=25),
    # 12 layers at 128 tokens: the shape is what this case is about, and FlashRank pads every pair to the
    # longest of the request, so 512 would cost minutes.
    "ms-marco-MiniLM-L-12-v2": Case(
        "ms-marco-MiniLM-L-12-v2", fp32_requests=5, int8_requests=3, max_passages=10, max_length=128
    ),
    "rank-T5-flan": Case("rank-T5-flan"),
    "ms-marco-MultiBERT-L-12": Case("ms-marco-MultiBERT-L-12", multilingual=True),
    "miniReranker_arabic_v1": Case("miniReranker_arabic_v1", multilingual=True),
}
assert tuple(CASES) == FAMILY_NAMES


def flashrank_scores(ranker: Ranker, query: str, texts: list[str]) -> list[float]:
    passages = [{"id": index, "text": text} for index, text in enumerate(texts)]
    ranked = ranker.rerank(RerankRequest(query=query, passages=passages))
    by_id = {passage["id"]: float(passage["score"]) for passage in ranked}
    return [by_id[index] for index in range(len(texts))]


def same_order_ties_aside(ours: list[float], theirs: list[float]) -> bool:
    """Every pair the reference orders by more than the tolerance is ordered the same way by us."""
    order = sorted(range(len(ours)), key=lambda index: -ours[index])
    return all(theirs[a] >= theirs[b] - 2 * TOLERANCE for a, b in itertools.pairwise(order))


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_fp32_scores_match_flashrank_on_whole_requests(case: Case) -> None:
    # Given MS MARCO-like requests (multilingual for the multilingual families) of 1-N passages, with long,
    # unicode, emoji and empty passages among them
    encoder, ranker = case.encoder("fp32"), case.ranker("fp32")
    requests = case.corpus(2024).requests(case.fp32_requests, max_passages=case.max_passages)
    passages_seen = truncated_seen = empty_seen = 0
    worst = 0.0
    for request in requests:
        texts = list(request.passages)
        # When both score the request
        report = encoder.score(request.query, texts)
        ours = [score for score in report.scores if score is not None]
        theirs = flashrank_scores(ranker, request.query, texts)
        # Then every score agrees within 1e-5 and the order is the same, ties aside
        worst = max(worst, *(abs(a - b) for a, b in zip(ours, theirs, strict=True)))
        assert same_order_ties_aside(ours, theirs), request.query
        passages_seen += len(texts)
        truncated_seen += report.truncated
        empty_seen += texts.count("")
    assert worst <= TOLERANCE, worst
    # and the sample really exercised truncation (and, on the large sample, empty strings)
    assert truncated_seen > 0
    if case.name == MODEL_NAME:
        assert truncated_seen / passages_seen > 0.05
        assert empty_seen > 0


def test_int8_score_is_flashrank_score_of_the_passage_alone(case: Case) -> None:
    encoder, ranker = case.encoder("int8"), case.ranker("int8")
    assert encoder.quantized
    worst = 0.0
    for request in case.corpus(99).requests(case.int8_requests, max_passages=case.max_passages):
        ours = encoder.score(request.query, list(request.passages)).scores
        for index, text in enumerate(request.passages):
            alone = flashrank_scores(ranker, request.query, [text])[0]
            score = ours[index]
            assert score is not None
            worst = max(worst, abs(score - alone))
    assert worst <= TOLERANCE, worst


def test_int8_score_does_not_depend_on_the_rest_of_the_request(case: Case) -> None:
    # Given a request, and the same passages reshuffled among different neighbours
    encoder, ranker = case.encoder("int8"), case.ranker("int8")
    rng = random.Random(5)
    moved_in_flashrank = 0.0
    requests = case.corpus(11).requests(
        max(2, case.int8_requests // 2),
        min_passages=min(10, case.max_passages),
        max_passages=case.max_passages,
    )
    for request in requests:
        texts = list(request.passages)
        full = encoder.score(request.query, texts).scores
        subset = rng.sample(range(len(texts)), k=len(texts) // 2)
        partial = encoder.score(request.query, [texts[index] for index in subset]).scores
        # Then every passage keeps its exact score, bit for bit
        assert [full[index] for index in subset] == partial
        # while FlashRank's own int8 scores move with the neighbours (what makes this property worth having)
        flash_full = flashrank_scores(ranker, request.query, texts)
        flash_partial = flashrank_scores(ranker, request.query, [texts[index] for index in subset])
        moved_in_flashrank = max(
            moved_in_flashrank,
            *(abs(flash_full[index] - score) for index, score in zip(subset, flash_partial, strict=True)),
        )
    assert moved_in_flashrank > TOLERANCE


def test_short_passages_score_in_window_mode_exactly_as_when_truncating(case: Case) -> None:
    encoder = case.encoder("int8")
    request = case.corpus(21).request(12)
    texts = [text for text in request.passages if len(text) < 300] + ["", "short"]
    truncated = encoder.score(request.query, texts)
    windowed = encoder.score(request.query, texts, long_documents="window")
    assert windowed.scores == truncated.scores
    assert windowed.tokens == truncated.tokens


def test_the_first_window_is_the_truncated_pair_in_the_tokenizers_own_template(case: Case) -> None:
    # Given a long passage and a short query
    encoder = case.encoder("int8")
    tokenization = encoder.tokenization
    query, long_text = "how fast is it", " ".join(case.corpus(3).request(1).query for _ in range(400))
    # When it is cut into windows
    runs, _ = tokenization.windows(query, [long_text], [0])
    # Then the first window holds exactly the tokens truncation keeps, in the same template and type ids
    truncated = tokenization.tokenizer.encode(query, long_text)
    assert truncated.overflowing
    assert (runs[0].ids, runs[0].type_ids) == (truncated.ids, truncated.type_ids)
    # and every window has the template's special tokens (T5: 2, BERT: 3) and fits the limit
    template = tokenization.template
    assert template is not None
    assert template.special_tokens == (2 if case.name == "rank-T5-flan" else 3)
    assert len(runs) > 1 and all(len(run.ids) <= encoder.max_length for run in runs)


@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_permuting_passages_permutes_scores(kind: str) -> None:
    encoder = CrossEncoder.load(fixture_model(kind))
    request = CorpusGenerator(seed=3).request(40)
    texts = list(request.passages)
    permutation = list(range(len(texts)))
    random.Random(1).shuffle(permutation)
    straight = encoder.score(request.query, texts).scores
    permuted = encoder.score(request.query, [texts[index] for index in permutation]).scores
    for position, index in enumerate(permutation):
        assert permuted[position] == pytest.approx(straight[index], abs=1e-6 if kind == "fp32" else 0)


def test_same_request_twice_gives_bit_identical_scores_and_leaves_input_untouched() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"))
    request = CorpusGenerator(seed=4).request(30)
    texts = list(request.passages)
    before = copy.deepcopy(texts)
    first = encoder.score(request.query, texts)
    second = encoder.score(request.query, texts)
    assert first.scores == second.scores
    assert texts == before
    assert all(type(score) is float and 0.0 <= score <= 1.0 for score in first.scores)
    payload: dict[str, Any] = {"scores": first.scores, "tokens": first.tokens}
    assert json.loads(json.dumps(payload)) == payload


def test_fixture_scores_spread() -> None:
    encoder = CrossEncoder.load(fixture_model("int8"))
    scores: list[float] = []
    for request in CorpusGenerator(seed=8).requests(10, min_passages=20, max_passages=30):
        scores += [s for s in encoder.score(request.query, list(request.passages)).scores if s is not None]
    spread = max(scores) - min(scores)
    assert spread > 0.8, spread
