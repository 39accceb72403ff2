"""The real LlamaIndex TEI reranker (llama-index-postprocessor-tei-rerank) against `./dev serve`, unmodified.

Its only setting is the base URL: it posts {"query", "texts"} to BASE/rerank and reads the bare list back.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

from tests.models import fixture_model
from tests.serve_process import serve_process

pytestmark = pytest.mark.xdist_group("tei-server")

# The marker fixture model scores a pair high (logit 6) iff it holds "zeppelin", low (-6) otherwise.
TEXTS = [
    "The cat slept on the warm windowsill all afternoon.",
    "The Graf Zeppelin flew around the world in 1929.",
    "Stock markets fell sharply on Tuesday.",
    "A zeppelin is a rigid airship with gas cells inside a metal frame.",
    "A recipe for lemon cake with a light glaze.",
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_process(fixture_model("marker")) as url:
        yield url


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=text, id_=f"n{index}"), score=0.1)
        for index, text in enumerate(TEXTS)
    ]


def test_llamaindex_reranks_through_the_function(base_url: str) -> None:
    reranker = TextEmbeddingInference(base_url=base_url, top_n=3)
    ranked = reranker.postprocess_nodes(nodes(), QueryBundle(query_str="history of rigid airships"))
    assert [node.node.node_id for node in ranked][:2] == ["n1", "n3"]
    assert len(ranked) == 3
    assert ranked[0].score == pytest.approx(1 / (1 + 2.718281828459045**-6), rel=1e-6)
    assert ranked[2].score is not None and ranked[2].score < 0.01


def test_llamaindex_sends_the_bearer_header_it_is_given(base_url: str) -> None:
    # AUTH_MODE=none here: the header is accepted and ignored, as a TEI server without --api-key does.
    reranker = TextEmbeddingInference(base_url=base_url, top_n=5, auth_token="Bearer anything")
    ranked = reranker.postprocess_nodes(nodes(), QueryBundle(query_str="airships"))
    assert len(ranked) == 5


def post(base_url: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        base_url + "/rerank",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_raw_scores_return_text_and_errors_over_http(base_url: str) -> None:
    status, body = post(
        base_url, {"query": "airships", "texts": TEXTS[:2], "raw_scores": True, "return_text": True}
    )
    assert status == 200
    assert body == [
        {"index": 1, "score": 6.0, "text": TEXTS[1]},
        {"index": 0, "score": -6.0, "text": TEXTS[0]},
    ]
    status, body = post(base_url, {"query": "airships", "texts": ["word " * 600], "truncate": False})
    assert (status, body["error_type"]) == (413, "validation")
    status, body = post(base_url, {"query": "airships", "texts": [1, 2]})
    assert (status, body["error_type"]) == (422, "validation")
