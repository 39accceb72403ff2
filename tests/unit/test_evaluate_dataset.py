"""Reading BEIR folders and TREC runs, the first stage, and the generated demo dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.evaluate import demo_data
from tools.evaluate.dataset import DatasetError, load_dataset, passage_text
from tools.evaluate.first_stage import bm25_candidates, first_stage


def write_beir(
    root: Path,
    corpus: list[dict[str, str]],
    queries: list[dict[str, str]],
    qrels: str,
    run: str | None = None,
) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    if run is not None:
        (root / "run.trec").write_text(run, encoding="utf-8")
    return root


CORPUS = [
    {"_id": "d1", "title": "Glaciers", "text": "Ice moves slowly."},
    {"_id": "d2", "title": "", "text": "Volcanoes erupt."},
    {"_id": "d3", "text": "Reefs are alive."},
]
QUERIES = [{"_id": "q1", "text": "how do glaciers move"}, {"_id": "q2", "text": "what erupts"}]


def test_a_beir_folder_is_read(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t0\nq2\td2\t2\nq9\td1\t1\nq3\td3\t0\n"
    dataset = load_dataset(write_beir(tmp_path, CORPUS, QUERIES, qrels))
    assert dataset.corpus == {
        "d1": "Glaciers Ice moves slowly.",
        "d2": "Volcanoes erupt.",
        "d3": "Reefs are alive.",
    }
    assert dataset.qrels["q1"] == {"d1": 1, "d3": 0}
    # q9 and q3 have no query text (q3 no relevant judgment either): neither is evaluated.
    assert dataset.evaluated_queries == ["q1", "q2"]
    assert dataset.skipped_queries == ["q9", "q3"]
    assert dataset.run is None


def test_run_trec_orders_by_score_cuts_and_skips_unknown_documents(tmp_path: Path) -> None:
    run = "q1 Q0 d3 1 9.5 bm25\nq1 Q0 d1 2 12.0 bm25\nq1 Q0 zz 3 11.0 bm25\nq1 Q0 d2 4 1.0 bm25\n"
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
    dataset = load_dataset(write_beir(tmp_path, CORPUS, QUERIES, qrels, run))
    assert dataset.run == {"q1": ["d1", "d3", "d2"]}
    assert dataset.missing_run_docs == 1
    assert first_stage(dataset, ["q1", "q2"], candidates=2) == {"q1": ["d1", "d3"], "q2": []}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"corpus.jsonl": None}, "corpus.jsonl is missing"),
        ({"corpus.jsonl": '{"_id": "d1"}\n'}, "corpus.jsonl:1: needs an object with _id, text"),
        ({"queries.jsonl": "not json\n"}, "queries.jsonl:1: not JSON"),
        ({"corpus.jsonl": '{"_id": "d", "text": "a"}\n{"_id": "d", "text": "b"}\n'}, "duplicate _id 'd'"),
        ({"qrels/test.tsv": "q1\td1\t1\n"}, "expected the header"),
        ({"qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\thigh\n"}, "test.tsv:2: score 'high'"),
        ({"qrels/test.tsv": "query-id\tcorpus-id\tscore\n"}, "has no judgments"),
        ({"run.trec": "q1 Q0 d1 1\n"}, "run.trec:1: expected 'qid Q0 docid rank score tag'"),
        ({"run.trec": "q1 Q0 d1 first 1.0 x\n"}, "run.trec:1: rank must be an integer"),
    ],
)
def test_broken_folders_name_the_file_and_line(
    tmp_path: Path, files: dict[str, str | None], message: str
) -> None:
    root = write_beir(tmp_path / "data", CORPUS, QUERIES, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    for name, content in files.items():
        if content is None:
            (root / name).unlink()
        else:
            (root / name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_dataset(root)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    root = write_beir(tmp_path / "data", CORPUS, QUERIES, "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (root / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl is not UTF-8 text"):
        load_dataset(root)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a directory"):
        load_dataset(tmp_path / "nope")


def test_passage_text_joins_title_and_text() -> None:
    assert passage_text({"title": " T ", "text": "body"}) == "T body"
    assert passage_text({"title": None, "text": "body"}) == "body"


def test_bm25_ranks_by_term_frequency_and_leaves_out_documents_without_a_query_term() -> None:
    corpus = {
        "one": "glacier report survey",
        "three": "glacier glacier glacier",
        "two": "glacier glacier notes",
        "other": "volcano lava notes",
    }
    found = bm25_candidates(corpus, {"q": "the glacier", "none": "unknown words"}, candidates=10)
    assert found == {"q": ["three", "two", "one"], "none": []}
    assert bm25_candidates(corpus, {"q": "glacier"}, candidates=2) == {"q": ["three", "two"]}


def test_demo_data_puts_relevant_documents_at_their_planned_bm25_rank(tmp_path: Path) -> None:
    plans = demo_data.generate(tmp_path, queries=12, docs_per_query=10)
    dataset = load_dataset(tmp_path)
    assert len(dataset.corpus) == 120
    assert dataset.evaluated_queries == [plan.query_id for plan in plans]
    candidates = first_stage(dataset, dataset.evaluated_queries, candidates=50)
    for plan in plans:
        ranking = candidates[plan.query_id]
        assert len(ranking) == 10
        relevant = next(doc for doc, grade in dataset.qrels[plan.query_id].items() if grade > 0)
        assert ranking.index(relevant) + 1 == plan.first_stage_rank
        with_marker = [
            rank for rank, doc in enumerate(ranking, 1) if demo_data.MARKER_WORD in dataset.corpus[doc]
        ]
        assert tuple(with_marker) == plan.marker_ranks
        assert demo_data.MARKER_WORD not in dataset.queries[plan.query_id]


def test_demo_marker_word_is_the_fixture_generators() -> None:
    from tools.fixture_model.__main__ import MARKER_WORD

    assert demo_data.MARKER_WORD == MARKER_WORD
