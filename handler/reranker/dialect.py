"""The one interface every wire format (native, Cohere v1 / v2, TEI) implements, and what it may ask of scoring.

A dialect reads a decoded body into native request(s), has them scored through ``Scoring``, builds its
answer, words its errors and says how to make a too-large answer fit. The router picks the dialect by route
and body; nothing else names one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reranker.errors import RerankerError
from reranker.observability import RerankTally
from reranker.schemas import Limits, RerankRequest


class TokenBudget(Protocol):
    """Cuts documents to a token budget with the model's own tokenizer (Cohere's max_tokens / max_chunks)."""

    def window_budget(self, query: str, chunks: int) -> int:
        """Passage tokens ``chunks`` windows cover beside this query; ModeNotApplicable if there are none."""
        ...

    def trim(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut at a word boundary to at most ``max_tokens`` tokens."""
        ...


class Scoring(Protocol):
    """One invocation's access to the model: this deployment's limits, the deadline, the tally, the id."""

    @property
    def limits(self) -> Limits: ...

    @property
    def max_batch_requests(self) -> int: ...

    @property
    def window_max_per_passage(self) -> int: ...

    @property
    def model(self) -> str: ...

    @property
    def max_length(self) -> int: ...

    @property
    def tally(self) -> RerankTally: ...

    @property
    def request_id(self) -> str | None:
        """The invocation's id (Lambda's aws_request_id); None outside Lambda."""
        ...

    def rank(self, request: RerankRequest) -> dict[str, Any]:
        """The native answer: cache, engine for the misses, deadline policy, ranking."""
        ...

    def score_every_passage(
        self, request: RerankRequest, *, with_logits: bool
    ) -> tuple[list[float | None], list[float | None] | None]:
        """Scores (and logits when asked) of every passage; DeadlineExceeded whatever the policy if any is left."""
        ...

    def whole_pair_lengths(self, query: str, texts: Sequence[str]) -> list[int]:
        """Each text's untruncated pair with the query, in model tokens."""
        ...

    def token_budget(self) -> TokenBudget:
        """The model's tokenizer as a TokenBudget (made on first use)."""
        ...


class Dialect[Request](Protocol):
    """A wire format: read, answer, error body, size advice."""

    @property
    def name(self) -> str: ...

    @property
    def size_advice(self) -> str:
        """How a caller makes a too-large answer fit, in this format's field names."""
        ...

    def claims(self, payload: object) -> bool:
        """Whether a body on a route this dialect shares is in this format (a route's own dialect: always)."""
        ...

    def read(self, payload: object, scoring: Scoring) -> Request:
        """The decoded body as this format's request (holding the native one); errors in its own words."""
        ...

    def answer(self, payload: object, scoring: Scoring) -> object:
        """Read the body (``read``), score it and shape the answer as this format's callers expect it."""
        ...

    def error_body(self, error: RerankerError) -> tuple[int, object]:
        """The HTTP status and JSON body of a public error, as this format's clients read it."""
        ...


type AnyDialect = Dialect[Any]


@dataclass(frozen=True)
class Outcome:
    """What a call produced, and the dialect to word it in: an answer, or the public error instead."""

    dialect: AnyDialect
    answer: object = None
    error: RerankerError | None = None
