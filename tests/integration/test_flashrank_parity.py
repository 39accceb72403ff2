"""Score parity with the FlashRank library run on the same model files.

fp32 is batch-invariant, so there FlashRank's one padded batch is the exact target. int8 models quantize
activations with one scale per batch tensor, so FlashRank's score for a passage moves with its neighbours;
there the target is FlashRank's score for the passage sent alone, and our score must never move.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any

import pytest
from flashrank import Ranker, RerankRequest

from reranker.engine import CrossEncoder
from tests.models import MODEL_NAME, fixture_cache_dir, fixture_model
from tools.fixture_model.corpus import CorpusGenerator

TOLERANCE = 1e-5

pytestmark = pytest.mark.xdist_group("parity")


def flashrank_scores(ranker: Ranker, query: str, texts: list[str]) -> list[float]:
    passages = [{"id": index, "text": text} for index, text in enumerate(texts)]
    ranked = ranker.rerank(RerankRequest(query=query, passages=passages))
    by_id = {passage["id"]: float(passage["score"]) for passage in ranked}
    return [by_id[index] for index in range(len(texts))]


def same_order_ties_aside(ours: list[float], theirs: list[float]) -> bool:
    """Every pair the reference orders by more than the tolerance is ordered the same way by us."""
    order = sorted(range(len(ours)), key=lambda index: -ours[index])
    return all(theirs[a] >= theirs[b] - 2 * TOLERANCE for a, b in itertools.pairwise(order))


@pytest.fixture(scope="module")
def fp32_pair() -> tuple[CrossEncoder, Ranker]:
    ranker = Ranker(model_name=MODEL_NAME, cache_dir=str(fixture_cache_dir("fp32")), log_level="WARNING")
    return CrossEncoder.load(fixture_model("fp32")), ranker


@pytest.fixture(scope="module")
def int8_pair() -> tuple[CrossEncoder, Ranker]:
    ranker = Ranker(model_name=MODEL_NAME, cache_dir=str(fixture_cache_dir("int8")), log_level="WARNING")
    return CrossEncoder.load(fixture_model("int8")), ranker


def test_fp32_scores_match_flashrank_on_200_requests(fp32_pair: tuple[CrossEncoder, Ranker]) -> None:
    # Given 200 MS MARCO-like requests of 1-100 passages (long, unicode, emoji, empty passages among them)
    encoder, ranker = fp32_pair
    requests = CorpusGenerator(seed=2024).requests(200)
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
    # and the sample really exercised truncation and empty strings
    assert truncated_seen / passages_seen > 0.05
    assert empty_seen > 0


def test_int8_score_is_flashrank_score_of_the_passage_alone(int8_pair: tuple[CrossEncoder, Ranker]) -> None:
    encoder, ranker = int8_pair
    worst = 0.0
    for request in CorpusGenerator(seed=99).requests(25, max_passages=40):
        ours = encoder.score(request.query, list(request.passages)).scores
        for index, text in enumerate(request.passages):
            alone = flashrank_scores(ranker, request.query, [text])[0]
            score = ours[index]
            assert score is not None
            worst = max(worst, abs(score - alone))
    assert worst <= TOLERANCE, worst


def test_int8_score_does_not_depend_on_the_rest_of_the_request(
    int8_pair: tuple[CrossEncoder, Ranker],
) -> None:
    # Given a request, and the same passages reshuffled among different neighbours
    encoder, ranker = int8_pair
    rng = random.Random(5)
    moved_in_flashrank = 0.0
    for request in CorpusGenerator(seed=11).requests(10, min_passages=10, max_passages=60):
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
