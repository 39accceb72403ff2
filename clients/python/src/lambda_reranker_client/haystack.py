"""Haystack ranker component (``pip install lambda-reranker-client[haystack]``).

No ``from __future__ import annotations``: Haystack reads the run() annotations to type its sockets.
"""

from dataclasses import replace

from haystack import Document, component

from lambda_reranker_client.client import RerankerClient


@component
class LambdaRanker:
    """Documents in, the best ``top_k`` out, sorted, each with the function's ``score``."""

    def __init__(
        self, client: RerankerClient, top_k: int | None = 10, min_score: float | None = None
    ) -> None:
        self.client = client
        self.top_k = top_k
        self.min_score = min_score

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        min_score: float | None = None,
    ) -> dict[str, list[Document]]:
        if not documents:
            return {"documents": []}
        response = self.client.rerank(
            query,
            [doc.content or "" for doc in documents],
            top_k=top_k if top_k is not None else self.top_k,
            min_score=min_score if min_score is not None else self.min_score,
        )
        return {"documents": [replace(documents[r.index], score=r.score) for r in response.results]}
