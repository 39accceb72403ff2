"""The contract's declarations: what a field's checks accept is exactly what its derived JSON Schema accepts.

The parsers check requests with reranker.contract's fields, and tools/openapi.py renders the same fields as the
served document's component schemas; these tests hold the two readings of each declaration to each other, and
the answers the function builds to the response shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reranker import contract
from reranker.cohere import V1_FIELDS, V2_FIELDS, V2_LEGACY_FIELDS
from reranker.errors import InvalidRequest, PayloadTooLarge
from reranker.fields import Field, Shape
from reranker.schemas import (
    PASSAGE_FIELDS,
    REQUEST_FIELDS,
    Limits,
    build_rerank_response,
    parse_rerank_request,
)
from reranker.tei import FIELDS as TEI_FIELDS

DOCUMENT = Path(__file__).resolve().parents[2] / "handler" / "reranker" / "openapi.json"
DEFAULTS = Limits()
REQUEST_SHAPES = (
    contract.RERANK_REQUEST,
    contract.PASSAGE_OBJECT,
    contract.TEI_REQUEST,
    contract.COHERE_V1_REQUEST,
    contract.COHERE_V2_REQUEST,
)
# Read by hand in tei.py: TEI takes the direction in any case and refuses Left with its own message.
CHECKED_BY_THE_PARSER = {("TeiRerankRequest", "truncation_direction")}

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2_000_000),
    # No NaN or infinity: JSON has none, and decode_json refuses them before any field is read.
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 1e6, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "   ", "truncate", "window", "right", "Right", "x" * 130, "q" * 3000]),
)
VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(["text", "a"]), children, max_size=2)
    ),
    max_leaves=6,
)


def declared_fields() -> list[tuple[Shape, Field]]:
    return [
        (shape, declared)
        for shape in REQUEST_SHAPES
        for declared in shape.fields
        if (shape.name, declared.name) not in CHECKED_BY_THE_PARSER
    ]


def accepted_by_the_checks(declared: Field, value: object) -> bool:
    """Whether the parser's reading of this field takes ``value`` (type, bounds, not blank, default limits)."""
    try:
        checked = declared.read({declared.name: value})
        if isinstance(checked, str):
            declared.ensure_not_blank(checked)
        if isinstance(checked, str | list):
            declared.ensure_within_limit(checked, DEFAULTS)
    except (InvalidRequest, PayloadTooLarge):
        return False
    return True


def accepted_by_the_schema(declared: Field, value: object) -> bool:
    schema: dict[str, Any] = declared.json_schema(DEFAULTS)
    if isinstance(schema.get("items"), dict) and "$ref" in schema["items"]:
        schema = {**schema, "items": {}}  # entries (passages, documents) are the parser's own reading
    return Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize(
    ("shape", "declared"),
    declared_fields(),
    ids=[f"{shape.name}.{declared.name}" for shape, declared in declared_fields()],
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=VALUES)
def test_checks_and_schema_accept_the_same_values(shape: Shape, declared: Field, value: object) -> None:
    assert accepted_by_the_checks(declared, value) == accepted_by_the_schema(declared, value), (
        shape.name,
        declared.name,
        value,
    )


def test_complaints_are_worded_from_the_declaration() -> None:
    fields = contract.RERANK_REQUEST
    cases = [
        (fields["top_k"], 0, "top_k must be a positive integer, got 0"),
        (fields["min_score"], 1.5, "min_score must be a number from 0 to 1, got 1.5"),
        (fields["return_text"], "yes", "return_text must be true or false, got a string"),
        (fields["long_documents"], "all", "long_documents must be one of truncate, window"),
        (fields["correlation_id"], "", "correlation_id must be a string of 1 to 128 characters"),
        (fields["passages"], {}, "passages must be a list, got an object"),
        (contract.PASSAGE_OBJECT["id"], [], "id must be a string, number or boolean, got a list"),
        (
            contract.COHERE_V1_REQUEST["max_chunks_per_doc"],
            0,
            "max_chunks_per_doc must be an integer between 1 and 10000",
        ),
        (contract.COHERE_V2_REQUEST["rank_fields"], [], "rank_fields must be a non-empty list of strings"),
    ]
    for declared, value, message in cases:
        with pytest.raises(InvalidRequest) as raised:
            declared.check(value)
        assert raised.value.public_message == message


def test_the_declared_field_order_is_the_order_errors_list_them_in() -> None:
    # "unknown field ...; allowed fields: ..." lists them in declaration order: reordering is a wire change.
    assert (
        contract.RERANK_REQUEST.names
        == REQUEST_FIELDS
        == (
            "query",
            "passages",
            "top_k",
            "min_score",
            "return_text",
            "long_documents",
            "correlation_id",
        )
    )
    assert contract.PASSAGE_OBJECT.names == PASSAGE_FIELDS == ("id", "text", "meta")
    assert contract.TEI_REQUEST.names == TEI_FIELDS
    assert contract.COHERE_V1_REQUEST.names == V1_FIELDS
    assert set(contract.COHERE_V2_REQUEST.names) == set(V2_FIELDS + V2_LEGACY_FIELDS)


def test_a_closed_shape_refuses_unknown_fields_and_says_so_in_its_schema() -> None:
    assert contract.RERANK_REQUEST.json_schema(DEFAULTS)["additionalProperties"] is False
    with pytest.raises(InvalidRequest, match="unknown field 'top_n'"):
        parse_rerank_request({"query": "q", "passages": [], "top_n": 1}, DEFAULTS)
    assert "additionalProperties" not in contract.COHERE_V2_REQUEST.json_schema(DEFAULTS)


def test_limits_are_documented_with_their_defaults() -> None:
    schema = contract.RERANK_REQUEST.json_schema(DEFAULTS)
    assert schema["properties"]["query"]["maxLength"] == DEFAULTS.max_query_chars
    assert schema["properties"]["passages"]["maxItems"] == DEFAULTS.max_passages
    assert f"default {DEFAULTS.max_total_chars};" in schema["description"]
    assert "{max_" not in json.dumps([component.json_schema(DEFAULTS) for component in contract.COMPONENTS])


def _response_validator(component: str) -> Draft202012Validator:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    )


def test_built_native_answers_match_the_response_shape() -> None:
    request = parse_rerank_request(
        {"query": "q", "passages": ["a", {"id": "b", "text": "b", "meta": {"k": 1}}, "c"], "min_score": 0.2},
        DEFAULTS,
    )
    answer = build_rerank_response(request, [0.9, 0.1, None], model="m", tokens=9, truncated=0, windows=2)
    validator = _response_validator(contract.RERANK_RESPONSE.name)
    assert list(validator.iter_errors(answer)) == []
    answer["results"][0]["score"] = 1.5
    assert not validator.is_valid(answer)
