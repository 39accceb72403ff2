"""A small generated BEIR dataset on which the marker fixture model's gain over BM25 is known exactly.

    python -m tools.evaluate.demo_data OUT [--queries 45] [--docs-per-query 10]

Each query asks about one topic word; its documents repeat that word 1..D times and are all equally long, so
BM25 ranks them by repetitions alone. The one relevant document sits at a planned BM25 rank. Relevant documents
usually carry the marker word (tools/fixture_model: the marker model scores +6 when it sees that word, -6
otherwise), so the marker model lifts them to the top; some queries are planned as ties (relevant already
first, or no marker at all) and some as losses (a non-relevant document carries the marker). Every plan's
first-stage and reranked rank of the relevant document is returned, so tests compute the metrics by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

TOPICS = (
    "glacier", "volcano", "lighthouse", "orchard", "telescope", "harbor", "meadow", "canyon", "reef", "tundra",
    "vineyard", "monsoon", "quarry", "prairie", "lagoon", "aqueduct", "citadel", "delta", "fjord", "geyser",
    "marsh", "oasis", "plateau", "savanna", "steppe", "atoll", "bayou", "cavern", "dune", "estuary",
    "glade", "headland", "isthmus", "jungle", "moraine", "peninsula", "rainforest", "sandbar", "taiga", "waterfall",
)  # fmt: skip
# Neutral filler words: never a topic, never in a query, never an English stopword of bm25s.
FILLERS = (
    "field", "notes", "survey", "report", "season", "records", "measured", "observed", "summary", "archive",
    "region", "team", "samples", "maps", "photos", "logbook", "weather", "visitors", "history", "guide",
)  # fmt: skip
QUESTION = "what do we know about {topic}"
# The marker model's word (tools/fixture_model; a test checks they agree): not imported, that would load onnx.
MARKER_WORD = "zeppelin"


@dataclass(frozen=True)
class Plan:
    """Where the relevant document of one query lands: its 1-based rank before and after reranking."""

    query_id: str
    first_stage_rank: int
    reranked_rank: int
    marker_ranks: tuple[int, ...]  # first-stage ranks of the documents carrying the marker word


def plans(queries: int, docs_per_query: int) -> list[Plan]:
    """The cycle of cases: lifts from several depths, a relevant document already first, a loss, no marker."""
    depth = docs_per_query
    lifts = sorted({min(rank, depth) for rank in (2, 3, 4, 6, 8, 10)})
    cycle: list[tuple[int, int, tuple[int, ...]]] = [(rank, 1, (rank,)) for rank in lifts]
    cycle.append((1, 1, (1,)))  # already first: a tie
    if depth >= 4:
        cycle.append((1, 2, (4,)))  # a non-relevant document with the marker jumps over the relevant one
    cycle.append((min(3, depth), min(3, depth), ()))  # no marker anywhere: the model changes nothing
    return [Plan(f"q{index + 1:03d}", *cycle[index % len(cycle)]) for index in range(queries)]


def topic(index: int) -> str:
    word = TOPICS[index % len(TOPICS)]
    return word if index < len(TOPICS) else f"{word}{index // len(TOPICS)}"


def document_text(word: str, repetitions: int, marker: bool, length: int, offset: int) -> str:
    """``length`` BM25 tokens: the topic word ``repetitions`` times, the marker (if any), fillers for the rest."""
    fillers = [FILLERS[(offset + step) % len(FILLERS)] for step in range(length - repetitions - marker)]
    words = [word] * repetitions + ([MARKER_WORD] if marker else []) + fillers
    return " ".join(words)


def generate(out: Path, *, queries: int = 45, docs_per_query: int = 10) -> list[Plan]:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under ``out``; return the plans."""
    if queries < 1 or docs_per_query < 1:
        raise ValueError("queries and docs_per_query must be positive")
    planned = plans(queries, docs_per_query)
    length = docs_per_query + 3  # room for every repetition count, the marker and at least two fillers
    corpus: list[dict[str, str]] = []
    query_lines: list[dict[str, str]] = []
    qrels: list[str] = ["query-id\tcorpus-id\tscore"]
    for index, plan in enumerate(planned):
        word = topic(index)
        query_lines.append({"_id": plan.query_id, "text": QUESTION.format(topic=word)})
        for rank in range(1, docs_per_query + 1):
            doc_id = f"d{index + 1:03d}-{rank:02d}"
            repetitions = docs_per_query + 1 - rank  # BM25 rank 1 has the most repetitions
            text = document_text(word, repetitions, rank in plan.marker_ranks, length, index + rank)
            # The same title for every document of a query: one more repetition each, BM25 order unchanged.
            corpus.append({"_id": doc_id, "title": f"{word.capitalize()} field notes", "text": text})
            if rank == plan.first_stage_rank:
                qrels.append(f"{plan.query_id}\t{doc_id}\t1")
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus), encoding="utf-8")
    (out / "queries.jsonl").write_text(
        "".join(json.dumps(query) + "\n" for query in query_lines), encoding="utf-8"
    )
    (out / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return planned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate.demo_data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="the folder to write (BEIR layout)")
    parser.add_argument("--queries", type=int, default=45)
    parser.add_argument("--docs-per-query", type=int, default=10)
    args = parser.parse_args(argv)
    planned = generate(args.out, queries=args.queries, docs_per_query=args.docs_per_query)
    print(f"wrote {len(planned)} queries and {len(planned) * args.docs_per_query} documents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
