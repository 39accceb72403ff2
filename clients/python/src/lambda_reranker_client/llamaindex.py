"""LlamaIndex node postprocessor (``pip install lambda-reranker-client[llamaindex]``)."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from lambda_reranker_client.client import RerankerClient


class LambdaRerank(BaseNodePostprocessor):
    """Rescores retrieved nodes with the function and keeps the best ``top_n`` (node scores become ours)."""

    top_n: int | None = Field(default=2, description="how many nodes to keep (None: all)")
    min_score: float | None = Field(default=None, description="drop nodes scored below this (0-1)")
    _client: RerankerClient = PrivateAttr()

    def __init__(self, client: RerankerClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client

    @classmethod
    def class_name(cls) -> str:
        return "LambdaRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("LambdaRerank needs the query (query_bundle)")
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        response = self._client.rerank(
            query_bundle.query_str, texts, top_k=self.top_n, min_score=self.min_score
        )
        return [
            NodeWithScore(node=nodes[result.index].node, score=result.score) for result in response.results
        ]
