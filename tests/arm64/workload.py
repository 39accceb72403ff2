"""What tests/arm64 scores on both architectures (score_pairs.py jobs), sized for emulation.

Emulation runs onnxruntime 50-100x slower than native (fp32 kernels slowest), so the samples are small:
short requests at a 128-token limit for fp32 whole-request parity (long passages still get truncated), and one
60-passage int8 request of short passages, scored whole, passage by passage, and by FlashRank passage by
passage: the batch invariance check, the int8 parity check and the x86_64 against arm64 comparison at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.fixture_model.corpus import CorpusGenerator

NANO = "ms-marco-TinyBERT-L-2-v2"
OTHER = "rank-T5-flan"  # SentencePiece tokenizer, T5 graph, no token_type_ids: the most different family
FAMILIES = (NANO, OTHER)
BATCH_PASSAGES = 60
PASSAGE_WORDS = 40  # the 60 passages are cut to this many words: emulated int8 costs about 1 ms per token
FP32_MAX_LENGTH = 128
FP32_REQUESTS, FP32_PASSAGES = 2, 5
INT8_REQUESTS, INT8_PASSAGES = 2, 6  # the other family's int8 parity sample


@dataclass(frozen=True)
class Job:
    name: str
    model_dir: Path
    scorer: str  # engine | engine_alone | flashrank | flashrank_alone (see score_pairs.py)
    requests: list[dict[str, Any]]
    max_length: int = 512

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_dir": str(self.model_dir),
            "scorer": self.scorer,
            "requests": self.requests,
            "max_length": self.max_length,
        }


def job_name(family: str, kind: str, scorer: str) -> str:
    return f"{family} {kind} {scorer}"


def _requests(corpus: CorpusGenerator, count: int, passages: int) -> list[dict[str, Any]]:
    return [
        {"query": request.query, "passages": list(request.passages)}
        for request in corpus.requests(count, min_passages=passages, max_passages=passages)
    ]


def batch_request() -> dict[str, Any]:
    """60 passages (empty, unicode, query words among them), each cut to its first PASSAGE_WORDS words."""
    request = CorpusGenerator(seed=60).request(BATCH_PASSAGES)
    passages = [" ".join(text.split(" ")[:PASSAGE_WORDS]) for text in request.passages]
    return {"query": request.query, "passages": passages}


def build_jobs(fixtures: Path) -> list[Job]:
    jobs = []
    for family in FAMILIES:
        fp32 = _requests(CorpusGenerator(seed=2024), FP32_REQUESTS, FP32_PASSAGES)
        for scorer in ("engine", "flashrank"):
            jobs.append(
                Job(
                    job_name(family, "fp32", scorer),
                    fixtures / "fp32" / family,
                    scorer,
                    fp32,
                    FP32_MAX_LENGTH,
                )
            )
        int8 = (
            [batch_request()]
            if family == NANO
            else _requests(CorpusGenerator(99), INT8_REQUESTS, INT8_PASSAGES)
        )
        scorers = (
            ("engine", "engine_alone", "flashrank_alone") if family == NANO else ("engine", "flashrank_alone")
        )
        jobs += [
            Job(job_name(family, "int8", scorer), fixtures / "int8" / family, scorer, int8)
            for scorer in scorers
        ]
    return jobs
