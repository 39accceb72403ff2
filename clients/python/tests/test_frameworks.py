"""Each framework component inside its framework, over the client, against the stand-in and the real handler."""

from __future__ import annotations

import asyncio

import pytest
from standin import StandIn

from lambda_reranker_client import RerankerClient, RetryPolicy

QUERY = "how does a cross-encoder rerank passages?"
TEXTS = [
    "Paris is the capital of France.",
    "A cross-encoder reads the query and a passage together and scores how relevant the passage is.",
    "Bananas are yellow and rich in potassium.",
    "Rerankers reorder the passages a retriever found, most relevant first.",
    "The Rhine flows into the North Sea.",
]


@pytest.fixture
def client(aws: StandIn) -> RerankerClient:
    return RerankerClient.from_url(aws.url, retry=RetryPolicy(max_attempts=1))


@pytest.fixture
def ranking(client: RerankerClient, aws: StandIn) -> list[int]:
    """The indexes of TEXTS, best first, as the function ranks them (the components must keep this order)."""
    order = [result.index for result in client.rerank(QUERY, TEXTS).results]
    aws.received.clear()
    return order


# --- LangChain ---------------------------------------------------------------------------------------


def test_langchain_compression_retriever_reranks_and_scores(
    client: RerankerClient, aws: StandIn, ranking: list[int]
) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from lambda_reranker_client.langchain import LambdaRerank

    class ListRetriever(BaseRetriever):
        documents: list[Document]

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return list(self.documents)

    documents = [
        Document(page_content=text, metadata={"n": n}, id=f"doc-{n}") for n, text in enumerate(TEXTS)
    ]
    retriever = ContextualCompressionRetriever(
        base_compressor=LambdaRerank(client=client, top_n=3),
        base_retriever=ListRetriever(documents=documents),
    )

    found = retriever.invoke(QUERY)

    assert [doc.metadata["n"] for doc in found] == ranking[:3]
    assert [doc.id for doc in found] == [f"doc-{n}" for n in ranking[:3]]
    scores = [doc.metadata["relevance_score"] for doc in found]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    assert "relevance_score" not in documents[0].metadata  # the retriever's documents are left alone
    assert len(aws.received) == 1

    found_async = asyncio.run(retriever.ainvoke(QUERY))
    assert [doc.metadata["n"] for doc in found_async] == ranking[:3]


def test_langchain_compressor_passes_the_service_error_through(client: RerankerClient) -> None:
    from langchain_core.documents import Document

    from lambda_reranker_client import InvalidRequest
    from lambda_reranker_client.langchain import LambdaRerank

    compressor = LambdaRerank(client=client)
    assert compressor.compress_documents([], QUERY) == []
    with pytest.raises(InvalidRequest):
        compressor.compress_documents([Document(page_content="x")], "")


# --- LlamaIndex ----------------------------------------------------------------------------------------


def test_llamaindex_query_engine_postprocessor_reranks(
    client: RerankerClient, aws: StandIn, ranking: list[int]
) -> None:
    from llama_index.core import SummaryIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.schema import TextNode

    from lambda_reranker_client.llamaindex import LambdaRerank

    nodes = [TextNode(text=text, id_=f"node-{n}") for n, text in enumerate(TEXTS)]
    engine = SummaryIndex(nodes).as_query_engine(
        llm=MockLLM(), node_postprocessors=[LambdaRerank(client, top_n=2)]
    )

    response = engine.query(QUERY)

    assert [node.node.node_id for node in response.source_nodes] == [f"node-{n}" for n in ranking[:2]]
    assert all(node.score is not None and 0 <= node.score <= 1 for node in response.source_nodes)
    # MockLLM echoes its prompt: the context it was given is the reranked nodes, best first.
    best, second = TEXTS[ranking[0]], TEXTS[ranking[1]]
    assert str(response).index(best) < str(response).index(second)
    assert len(aws.received) == 1


def test_llamaindex_postprocessor_needs_the_query(client: RerankerClient) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from lambda_reranker_client.llamaindex import LambdaRerank

    with pytest.raises(ValueError, match="query"):
        LambdaRerank(client).postprocess_nodes([NodeWithScore(node=TextNode(text="x"))])


# --- Haystack --------------------------------------------------------------------------------------------


def test_haystack_pipeline_bm25_then_ranker(client: RerankerClient, aws: StandIn) -> None:
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from lambda_reranker_client.haystack import LambdaRanker

    store = InMemoryDocumentStore()
    store.write_documents([Document(content=text, meta={"n": n}) for n, text in enumerate(TEXTS)])
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=len(TEXTS)))
    pipeline.add_component("ranker", LambdaRanker(client, top_k=3))
    pipeline.connect("retriever.documents", "ranker.documents")

    result = pipeline.run(
        {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}, include_outputs_from={"retriever"}
    )

    retrieved = result["retriever"]["documents"]
    assert len(retrieved) >= 2  # BM25 returns only documents sharing a term with the query
    expected = [r.index for r in client.rerank(QUERY, [doc.content for doc in retrieved], top_k=3).results]
    documents = result["ranker"]["documents"]
    assert [doc.id for doc in documents] == [retrieved[i].id for i in expected]
    assert [doc.meta for doc in documents] == [retrieved[i].meta for i in expected]
    scores = [doc.score for doc in documents]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)

    override = pipeline.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY, "top_k": 1}})
    assert [doc.id for doc in override["ranker"]["documents"]] == [retrieved[expected[0]].id]
    assert len(aws.received) == 3


def test_haystack_ranker_with_no_documents_asks_nothing(client: RerankerClient, aws: StandIn) -> None:
    from lambda_reranker_client.haystack import LambdaRanker

    assert LambdaRanker(client).run(query=QUERY, documents=[]) == {"documents": []}
    assert aws.received == []


def test_haystack_telemetry_is_off_in_these_tests() -> None:
    from haystack.telemetry import _telemetry

    assert _telemetry.telemetry is None  # conftest turned it off before haystack was imported
