"""The API contract declared once: every request and response shape of every wire format.

The parsers (schemas.py for the native API, cohere.py, tei.py) check requests with these declarations and word
their complaints from them; ``python -m tools.openapi`` renders the same declarations as the component schemas
of the served openapi.json, so the document cannot drift from what the function accepts. A ``{max_...}`` in a
description is the default of that request limit (schemas.Limits).
"""

from __future__ import annotations

from typing import get_args

from reranker.config import LongDocuments
from reranker.fields import Component, Field, Schema, Shape, ref

MAX_CORRELATION_ID_CHARS = 128
MAX_CHUNKS_PER_DOC_LIMIT = 10_000
MAX_TOKENS_PER_DOC_LIMIT = 1_000_000
MAX_BATCH_REQUESTS_DEFAULT = 100  # documented only: batch.py reads the deployment's MAX_BATCH_REQUESTS

# --- requests -----------------------------------------------------------------------------------------------

QUERY = Field(
    "query",
    ("string",),
    required=True,
    null_is_missing=True,
    not_blank=True,
    limit="max_query_chars",
    got="type",
    description="The search query; not empty or blank. At most MAX_QUERY_CHARS characters "
    "(default {max_query_chars}; a longer one is 413).",
)
TOP_K = Field(
    "top_k",
    ("integer",),
    nullable=True,
    minimum=1,
    got="value",
    description="Return at most this many results (default: all). Applied after min_score.",
)

PASSAGE_OBJECT = Shape(
    "PassageObject",
    closed=True,
    fields=(
        Field(
            "id",
            ("string", "number", "boolean"),
            nullable=True,
            got="type",
            description="Returned as sent; default (or null): the passage's index. Numbers must be finite.",
        ),
        Field(
            "text",
            ("string",),
            required=True,
            got="type",
            description="What the model scores. Characters past MAX_PASSAGE_CHARS (default {max_passage_chars}) "
            "are not scored but are returned untouched.",
        ),
        Field("meta", description="Any JSON value, returned untouched."),
    ),
)
PASSAGE = Schema(
    "Passage",
    {
        "oneOf": [
            {"type": "string", "description": "A bare string is a passage whose id is its index."},
            ref(PASSAGE_OBJECT.name),
        ]
    },
)

RERANK_REQUEST = Shape(
    "RerankRequest",
    closed=True,
    description="The native request. Unknown fields are rejected (400), so a typo such as top_n fails loudly. "
    "Optional fields sent as null are absent (except return_text). The query and passages together hold at "
    "most MAX_TOTAL_CHARS characters (default {max_total_chars}; more is 413).",
    fields=(
        QUERY,
        Field(
            "passages",
            ("array",),
            required=True,
            required_hint=" (a list of strings or objects with text)",
            limit="max_passages",
            items=ref(PASSAGE.name),
            got="type",
            description="At most MAX_PASSAGES (default {max_passages}; more is 413). Empty: 200 with no results.",
        ),
        TOP_K,
        Field(
            "min_score",
            ("number",),
            nullable=True,
            minimum=0,
            maximum=1,
            got="value",
            description="Drop scored passages whose score is below this (after ranking, before the top_k cut); "
            "usage.filtered counts them. Passages the deadline left unscored are never dropped.",
        ),
        Field(
            "return_text",
            ("boolean",),
            default=True,
            got="type",
            description="Echo each passage's text in its result.",
        ),
        Field(
            "long_documents",
            ("string",),
            nullable=True,
            enum=get_args(LongDocuments),
            description="How passages longer than the model's input are scored "
            "(default: the deployment's LONG_DOCUMENTS).",
        ),
        Field(
            "correlation_id",
            ("string",),
            nullable=True,
            min_length=1,
            max_length=MAX_CORRELATION_ID_CHARS,
            description="Logged with the request (direct invokes; HTTP callers send X-Correlation-Id).",
        ),
    ),
)

TEI_REQUEST = Shape(
    "TeiRerankRequest",
    description="Hugging Face text-embeddings-inference's rerank request: a body with texts and no passages. "
    "Unknown fields are ignored, as TEI ignores them.",
    schema_extra={"not": {"required": ["passages"]}},
    fields=(
        QUERY,
        Field(
            "texts",
            ("array",),
            required=True,
            min_length=1,
            limit="max_passages",
            items="string",
            description="At most MAX_PASSAGES (default {max_passages}; more is 413). Empty is 422.",
        ),
        Field(
            "raw_scores",
            ("boolean",),
            nullable=True,
            default=False,
            description="score is the raw logit instead of the probability.",
        ),
        Field("return_text", ("boolean",), nullable=True, default=False),
        Field(
            "truncate",
            ("boolean",),
            nullable=True,
            default=True,
            description="false: a text that does not fit the model input with the query is 413 instead of "
            "truncated. Omitted or null: truncate (like TEI's --auto-truncate).",
        ),
        Field(
            "truncation_direction",
            ("string",),
            nullable=True,
            enum=("Right", "right"),
            description="Only Right: texts keep their beginning (Left is 422).",
        ),
    ),
)

COHERE_DOCUMENT = Schema(
    "CohereDocument",
    {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}},
                "description": "An object whose text is scored (with rank_fields, those fields as 'key: value' "
                "lines instead; then text is not needed).",
            },
        ]
    },
)
# Cohere bodies: every field may be null (absent); unknown fields are ignored.
_COHERE_DOCUMENTS = Field(
    "documents",
    ("array",),
    required=True,
    null_is_missing=True,
    required_hint=" (a list of strings or objects)",
    limit="max_passages",
    items=ref(COHERE_DOCUMENT.name),
)
_TOP_N = Field("top_n", TOP_K.types, nullable=True, minimum=TOP_K.minimum, got=TOP_K.got)


def _rank_fields(description: str = "") -> Field:
    return Field(
        "rank_fields", ("array",), nullable=True, min_length=1, items="string", description=description
    )


def _return_documents(description: str = "") -> Field:
    return Field("return_documents", ("boolean",), nullable=True, default=False, description=description)


COHERE_V2_REQUEST = Shape(
    "CohereV2Request",
    description="Cohere's v2 rerank request. Unknown fields are ignored (newer SDKs add some); null means absent.",
    fields=(
        Field(
            "model",
            ("string",),
            nullable=True,
            description="Accepted and ignored: the deployment's model answers.",
        ),
        QUERY,
        _COHERE_DOCUMENTS,
        _TOP_N,
        Field("max_tokens_per_doc", ("integer",), nullable=True, minimum=1, maximum=MAX_TOKENS_PER_DOC_LIMIT),
        Field("priority", description="Accepted and ignored."),
        # Older v2 SDKs still send these; honouring them costs nothing.
        _rank_fields("Legacy v2 SDKs."),
        _return_documents("Legacy v2 SDKs."),
    ),
)
COHERE_V2_LEGACY_FIELDS = ("rank_fields", "return_documents")
COHERE_V1_REQUEST = Shape(
    "CohereV1Request",
    description="Cohere's v1 rerank request. Unknown fields are ignored; null means absent.",
    fields=(
        Field("model", ("string",), nullable=True),
        QUERY,
        _COHERE_DOCUMENTS,
        _TOP_N,
        _rank_fields(),
        _return_documents(),
        Field("max_chunks_per_doc", ("integer",), nullable=True, minimum=1, maximum=MAX_CHUNKS_PER_DOC_LIMIT),
    ),
)

# --- responses ----------------------------------------------------------------------------------------------

_COUNT = Field("count", ("integer",), minimum=0)


def _count(name: str, description: str = "", *, required: bool = False) -> Field:
    return Field(name, _COUNT.types, minimum=_COUNT.minimum, required=required, description=description)


RERANK_RESULT = Shape(
    "RerankResult",
    fields=(
        _count("index", "The passage's position in the request.", required=True),
        Field("id", ("string", "number", "boolean"), required=True),
        Field(
            "score",
            ("number",),
            required=True,
            nullable=True,
            minimum=0,
            maximum=1,
            description="Relevance probability; null for a passage the deadline left unscored "
            "(then reranked is false).",
        ),
        Field("text", ("string",), description="Present when return_text is true."),
        Field("meta", description="Present when the passage had meta."),
        Field(
            "reranked",
            const=False,
            description="Only on passages the deadline left unscored (DEADLINE_POLICY=fallback); they come "
            "last, in input order.",
        ),
    ),
)
USAGE = Shape(
    "Usage",
    fields=(
        _count("passages", required=True),
        _count("tokens", required=True),
        _count(
            "truncated",
            "Passages longer than the model input (or than the window limit in window mode).",
            required=True,
        ),
        _count("windows", "Model runs (one per passage; more in window mode)."),
        _count("cached", "Scores served from the warm cache (when the cache is on)."),
        _count("filtered", "Scored passages dropped by min_score (only when the request set min_score)."),
        Field(
            "fanout",
            ("object",),
            description="Only when the request was split across invocations (FANOUT_MAX_WORKERS): shards, "
            "workers, worker_ms (the workers' invoke time, summed), worker_errors, local_fallbacks.",
        ),
    ),
)
RERANK_RESPONSE = Shape(
    "RerankResponse",
    fields=(
        Field("model", ("string",), required=True),
        Field(
            "results",
            ("array",),
            required=True,
            items=ref(RERANK_RESULT.name),
            description="Best first; ties keep input order.",
        ),
        Field("usage", required=True, schema_extra=ref(USAGE.name)),
    ),
)

ERROR_TYPES = (
    "InvalidRequest",
    "Unauthorized",
    "RouteNotFound",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "ModelUnavailable",
    "DeadlineExceeded",
)
ERROR_DETAIL = Shape(
    "ErrorDetail",
    fields=(
        Field(
            "type",
            ("string",),
            required=True,
            enum=ERROR_TYPES,
            description="Stable error type (also the Lambda errorType of direct invokes).",
        ),
        Field(
            "message",
            ("string",),
            required=True,
            description="Points at the offending field; never a stack trace, a path or passage text.",
        ),
    ),
)
ERROR = Shape("Error", fields=(Field("error", required=True, schema_extra=ref(ERROR_DETAIL.name)),))

BATCH_REQUEST = Shape(
    "BatchRequest",
    closed=True,
    description="Many native requests in one call. Each item is validated and answered on its own: a bad item "
    "gets an error in its place.",
    fields=(
        Field(
            "requests",
            ("array",),
            required=True,
            max_length=MAX_BATCH_REQUESTS_DEFAULT,
            items={"description": "A native request (RerankRequest)."},
            description=f"At most MAX_BATCH_REQUESTS (default {MAX_BATCH_REQUESTS_DEFAULT}; more is 413).",
        ),
        Field("correlation_id", ("string",), min_length=1, max_length=MAX_CORRELATION_ID_CHARS),
    ),
)
ITEM_BATCH_REQUEST = Shape(
    "ItemBatchRequest",
    closed=True,
    description="Step Functions Distributed Map ItemBatcher shape: BatchInput holds defaults (e.g. top_k, "
    "min_score, return_text) merged under every item.",
    fields=(
        Field(
            "Items",
            ("array",),
            required=True,
            max_length=MAX_BATCH_REQUESTS_DEFAULT,
            items={"description": "A native request (RerankRequest), BatchInput's fields as defaults."},
        ),
        Field(
            "BatchInput",
            ("object",),
            nullable=True,
            description="Request fields every item inherits unless it sets them.",
        ),
    ),
)
BATCH_ITEM_ERROR = Shape(
    "BatchItemError", fields=(Field("error", required=True, schema_extra=ref(ERROR_DETAIL.name)),)
)
BATCH_RESPONSE = Shape(
    "BatchResponse",
    fields=(
        Field(
            "responses",
            ("array",),
            required=True,
            items={"anyOf": [ref(RERANK_RESPONSE.name), ref(BATCH_ITEM_ERROR.name)]},
            description="One answer per item, in order.",
        ),
    ),
)

TEI_RANK = Shape(
    "TeiRank",
    fields=(
        _count("index", required=True),
        Field(
            "score",
            ("number",),
            required=True,
            description="Probability in [0, 1], or the raw logit with raw_scores.",
        ),
        Field("text", ("string",)),
    ),
)
TEI_RERANK_RESPONSE = Schema(
    "TeiRerankResponse",
    {
        "type": "array",
        "items": ref(TEI_RANK.name),
        "description": "Every text, best first (ties keep input order).",
    },
)
TEI_ERROR_TYPES = ("validation", "tokenizer", "backend", "overloaded", "unhealthy")
TEI_ERROR = Shape(
    "TeiError",
    fields=(
        Field("error", ("string",), required=True),
        Field("error_type", ("string",), required=True, enum=TEI_ERROR_TYPES),
    ),
)

COHERE_RESULT = Shape(
    "CohereResult",
    fields=(
        _count("index", required=True),
        Field("relevance_score", ("number",), required=True, minimum=0, maximum=1),
        Field(
            "document",
            ("object",),
            description="With return_documents: {text} for a string, the object as sent otherwise.",
        ),
    ),
)
COHERE_META = Shape(
    "CohereMeta",
    fields=(
        Field("api_version", ("object",), shape=Shape("ApiVersion", (Field("version", ("string",)),))),
        Field("billed_units", ("object",), shape=Shape("BilledUnits", (_count("search_units"),))),
        Field("warnings", ("array",), items="string"),
    ),
)
COHERE_RESPONSE = Shape(
    "CohereResponse",
    fields=(
        Field("id", ("string",), required=True),
        Field("results", ("array",), required=True, items=COHERE_RESULT),
        Field("meta", ("object",), required=True, shape=COHERE_META),
    ),
)
COHERE_ERROR = Shape("CohereError", fields=(Field("message", ("string",), required=True),))
GATEWAY_ERROR = Shape(
    "GatewayError",
    description="Answered by API Gateway or Lambda's Function URL front end, before the function runs "
    "(throttling, IAM, size).",
    fields=(Field("message", ("string",), required=True),),
)

HEALTH = Shape(
    "Health",
    fields=(
        Field("status", required=True, const="ok"),
        Field("version", ("string",), required=True),
        Field("function_version", ("string",), nullable=True),
        Field(
            "model",
            ("object",),
            required=True,
            shape=Shape(
                "HealthModel",
                (
                    Field("name", ("string",), required=True),
                    Field("sha256", ("string",), required=True),
                    Field("quantized", ("boolean",)),
                    Field(
                        "fixture",
                        ("boolean",),
                        description="true for a model the project's fixture generator made (random weights: "
                        "its scores mean nothing); false for a real model.",
                    ),
                ),
            ),
        ),
        Field("engine", ("object",), required=True),
        Field(
            "limits", ("object",), required=True, schema_extra={"additionalProperties": {"type": "integer"}}
        ),
        Field("deadline", ("object",)),
        Field("long_documents", ("string",), enum=get_args(LongDocuments)),
        Field("max_batch_requests", ("integer",)),
        Field("auth", ("string",)),
        Field("score_cache", ("object",)),
    ),
)
OPENAPI_DOCUMENT = Shape(
    "OpenApiDocument",
    fields=(
        Field("openapi", ("string",), required=True),
        Field("info", required=True),
        Field("paths", required=True),
    ),
)

# The component schemas of openapi.json, in the document's order.
COMPONENTS: tuple[Component, ...] = (
    PASSAGE_OBJECT,
    PASSAGE,
    RERANK_REQUEST,
    RERANK_RESULT,
    USAGE,
    RERANK_RESPONSE,
    BATCH_REQUEST,
    ITEM_BATCH_REQUEST,
    BATCH_ITEM_ERROR,
    BATCH_RESPONSE,
    TEI_REQUEST,
    TEI_RANK,
    TEI_RERANK_RESPONSE,
    TEI_ERROR,
    COHERE_DOCUMENT,
    COHERE_V2_REQUEST,
    COHERE_V1_REQUEST,
    COHERE_RESPONSE,
    COHERE_ERROR,
    ERROR_DETAIL,
    ERROR,
    GATEWAY_ERROR,
    HEALTH,
    OPENAPI_DOCUMENT,
)
