"""./dev eval: does reranking pay on your data? First-stage ranking against reranked, with a verdict."""
