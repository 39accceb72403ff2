"""LangChain document compressor (``pip install lambda-reranker-client[langchain]``), like FlashRank's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict

from lambda_reranker_client.client import RerankerClient


class LambdaRerank(BaseDocumentCompressor):
    """Reorders documents by the function's scores, keeps the best ``top_n``, and puts each score in
    ``metadata["relevance_score"]``; use it as a ``ContextualCompressionRetriever``'s ``base_compressor``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: RerankerClient
    top_n: int | None = 3
    min_score: float | None = None

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        if not documents:
            return []
        response = self.client.rerank(
            query, [doc.page_content for doc in documents], top_k=self.top_n, min_score=self.min_score
        )
        return [_scored(documents[result.index], result.score) for result in response.results]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        if not documents:
            return []
        response = await self.client.arerank(
            query, [doc.page_content for doc in documents], top_k=self.top_n, min_score=self.min_score
        )
        return [_scored(documents[result.index], result.score) for result in response.results]


def _scored(document: Document, score: float) -> Document:
    metadata: dict[str, Any] = {**document.metadata, "relevance_score": score}
    return Document(page_content=document.page_content, metadata=metadata, id=document.id)
