"""First-stage candidates: the dataset's run.trec when it has one, else BM25 over the corpus with bm25s."""

from __future__ import annotations

from collections.abc import Sequence

from tools.evaluate.dataset import Dataset


def first_stage(dataset: Dataset, query_ids: Sequence[str], candidates: int) -> dict[str, list[str]]:
    """Up to ``candidates`` doc ids per query, best first."""
    if dataset.run is not None:
        return {query_id: dataset.run.get(query_id, [])[:candidates] for query_id in query_ids}
    return bm25_candidates(dataset.corpus, {q: dataset.queries[q] for q in query_ids}, candidates)


def bm25_candidates(corpus: dict[str, str], queries: dict[str, str], candidates: int) -> dict[str, list[str]]:
    """bm25s (Lucene BM25, English stopwords, no stemming); documents sharing no term with the query are left out."""
    import bm25s

    doc_ids = list(corpus)
    query_ids = list(queries)
    if not query_ids or not doc_ids:
        return {query_id: [] for query_id in query_ids}
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="en")
    retriever = bm25s.BM25()
    retriever.index(tokenizer.tokenize(list(corpus.values()), show_progress=False), show_progress=False)
    tokens = tokenizer.tokenize(list(queries.values()), update_vocab=False, show_progress=False)
    found, scores = retriever.retrieve(tokens, k=min(candidates, len(doc_ids)), show_progress=False)
    return {
        query_id: [doc_ids[int(doc)] for doc, score in zip(row, row_scores, strict=True) if score > 0]
        for query_id, row, row_scores in zip(query_ids, found, scores, strict=True)
    }
