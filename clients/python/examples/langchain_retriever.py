import os

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from lambda_reranker_client import RerankerClient
from lambda_reranker_client.langchain import LambdaRerank

texts = ["A cross-encoder scores query and passage together.", "Bananas are yellow.", "Paris is in France."]
base_retriever = InMemoryVectorStore.from_texts(texts, DeterministicFakeEmbedding(size=32)).as_retriever(
    search_kwargs={"k": 3}
)  # stands in for your retriever (vector store, BM25...): fetch wide, let the reranker pick
retriever = ContextualCompressionRetriever(
    base_compressor=LambdaRerank(client=RerankerClient.from_url(os.environ["RERANKER_URL"]), top_n=2),
    base_retriever=base_retriever,
)
for doc in retriever.invoke("what is a cross-encoder?"):
    print(round(doc.metadata["relevance_score"], 3), doc.page_content)
