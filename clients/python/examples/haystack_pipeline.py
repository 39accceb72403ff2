import os

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from lambda_reranker_client import RerankerClient
from lambda_reranker_client.haystack import LambdaRanker

store = InMemoryDocumentStore()
store.write_documents(
    [Document(content=text) for text in ["A cross-encoder scores query and passage.", "A banana is yellow."]]
)
pipeline = Pipeline()
pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=20))
pipeline.add_component("ranker", LambdaRanker(RerankerClient.from_url(os.environ["RERANKER_URL"]), top_k=1))
pipeline.connect("retriever.documents", "ranker.documents")
query = "what is a cross-encoder?"
result = pipeline.run({"retriever": {"query": query}, "ranker": {"query": query}})
for document in result["ranker"]["documents"]:
    print(round(document.score, 3), document.content)
