"""A BEIR-layout folder read into memory: corpus.jsonl, queries.jsonl, qrels/test.tsv and an optional run.trec."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QRELS_PATH = Path("qrels") / "test.tsv"
RUN_FILE = "run.trec"


class DatasetError(Exception):
    """The folder is not a readable BEIR dataset; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    """Documents and queries by id; qrels as {query id: {doc id: grade}}; run.trec (if any) as doc ids per query."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    run: dict[str, list[str]] | None = None
    missing_run_docs: int = 0
    skipped_queries: list[str] = field(default_factory=list)

    @property
    def evaluated_queries(self) -> list[str]:
        """Queries with text and at least one relevant judgment, in qrels order."""
        return [
            query_id
            for query_id, judged in self.qrels.items()
            if query_id in self.queries and any(grade > 0 for grade in judged.values())
        ]


def load_dataset(directory: Path) -> Dataset:
    """Read the folder; DatasetError for anything missing or malformed."""
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory")
    corpus = {
        doc_id: passage_text(record)
        for doc_id, record in _records(directory / "corpus.jsonl", required=("_id", "text"))
    }
    queries = {
        query_id: str(record["text"])
        for query_id, record in _records(directory / "queries.jsonl", required=("_id", "text"))
    }
    qrels = read_qrels(directory / QRELS_PATH)
    run_path = directory / RUN_FILE
    run, missing = (None, 0)
    if run_path.is_file():
        run, missing = read_trec_run(run_path, known_docs=corpus)
    skipped = [query_id for query_id in qrels if query_id not in queries]
    return Dataset(corpus, queries, qrels, run, missing, skipped)


def passage_text(record: dict[str, Any]) -> str:
    """What the reranker sees of a BEIR document: its title (when there is one) and its text."""
    title = str(record.get("title") or "").strip()
    text = str(record["text"])
    return f"{title} {text}" if title else text


def _records(path: Path, *, required: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing (a BEIR folder has corpus.jsonl, queries.jsonl, qrels/test.tsv)"
        )
    seen: set[str] = set()
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or any(key not in record for key in required):
            raise DatasetError(f"{path}:{number}: needs an object with {', '.join(required)}")
        record_id = str(record["_id"])
        if record_id in seen:
            raise DatasetError(f"{path}:{number}: duplicate _id {record_id!r}")
        seen.add(record_id)
        yield record_id, record


def _lines(path: Path) -> Iterator[str]:
    """The file's lines, streamed (BEIR corpora run to gigabytes); DatasetError if it is not UTF-8."""
    with path.open(encoding="utf-8", newline="") as stream:
        try:
            yield from stream
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path} is not UTF-8 text") from exc


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels: a tab-separated header ``query-id corpus-id score``, then one judgment a line."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    rows = csv.reader(_lines(path), delimiter="\t")
    header = next(rows, None)
    if header is None or [name.strip() for name in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise DatasetError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score'")
    for number, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise DatasetError(f"{path}:{number}: expected 3 tab-separated columns")
        try:
            grade = int(row[2])
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: score {row[2]!r} is not an integer") from exc
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    if not qrels:
        raise DatasetError(f"{path} has no judgments")
    return qrels


def read_trec_run(path: Path, *, known_docs: dict[str, str]) -> tuple[dict[str, list[str]], int]:
    """A TREC run (``qid Q0 docid rank score tag``) as doc ids best first, and how many were not in the corpus.

    Order is by score, highest first, as trec_eval reads a run; equal scores keep the order of the rank column.
    """
    entries: dict[str, list[tuple[float, int, str]]] = {}
    missing = 0
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise DatasetError(f"{path}:{number}: expected 'qid Q0 docid rank score tag'")
        query_id, _, doc_id, rank, score, _ = fields
        try:
            entry = (float(score), int(rank), doc_id)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: rank must be an integer and score a number") from exc
        if doc_id not in known_docs:
            missing += 1
            continue
        entries.setdefault(query_id, []).append(entry)
    run = {
        query_id: list(dict.fromkeys(doc for _, _, doc in sorted(ranked, key=lambda e: (-e[0], e[1]))))
        for query_id, ranked in entries.items()
    }
    return run, missing
