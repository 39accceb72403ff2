"""Legal but hostile input through every route, each answer checked as the real Python runtime would send it.

Unpaired surrogates, numbers Python cannot round-trip, answers at Lambda's 6 MB limit. Events are parsed and
answers serialized with awslambdaric's own marshaller (simplejson, ``ensure_ascii=False`` as on python3.13),
then encoded to UTF-8 as its runtime client does and read back as strict JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reranker import adapters
from reranker.errors import InvalidRequest, RerankerError
from reranker.text import replace_lone_surrogates
from tests.events import load_event
from tools.invoke import LocalContext

EXECUTION_ENV = "AWS_Lambda_python3.13"  # the managed runtime's value: ensure_ascii=False in its encoder


def fixture_settings(examples: int) -> settings:
    """Hypothesis settings for tests that run the handler (a fixture shared across examples, slow examples)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@contextmanager
def execution_env() -> Iterator[None]:
    previous = os.environ.get("AWS_EXECUTION_ENV")
    os.environ["AWS_EXECUTION_ENV"] = EXECUTION_ENV
    try:
        yield
    finally:
        if previous is None:
            del os.environ["AWS_EXECUTION_ENV"]
        else:
            os.environ["AWS_EXECUTION_ENV"] = previous


with execution_env():
    MARSHALLER = LambdaMarshaller()  # its encoder reads AWS_EXECUTION_ENV once, here


def _refuse_constant(name: str) -> object:
    raise AssertionError(f"the answer is not strict JSON: it holds {name}")


def strict_json(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)


@dataclass
class Answer:
    """One invocation as the caller receives it: HTTP status and body, or the raised error of a direct invoke."""

    status: int
    body: Any
    raised: RerankerError | None = None
    size: int = 0  # bytes the runtime sent to Lambda (what the 6 MB limit counts)

    @property
    def message(self) -> str:
        if self.raised is not None:
            return self.raised.public_message
        error = self.body.get("error", self.body)
        return str(error["message"])


def invoke_like_lambda(app: ModuleType, event_json: str) -> Answer:
    """Parse the event, run the handler and send its answer the way awslambdaric does."""
    event = MARSHALLER.unmarshal_request(event_json)
    try:
        result = app.lambda_handler(event, LocalContext())
    except RerankerError as exc:
        return Answer(status=exc.http_status, body=None, raised=exc)
    data, _content_type = MARSHALLER.marshal_response(result)
    raw = (
        data if isinstance(data, bytes) else data.encode("utf-8")
    )  # LambdaRuntimeClient.post_invocation_result
    payload = strict_json(raw)
    if isinstance(payload, dict) and "statusCode" in payload:
        return Answer(
            status=payload["statusCode"], body=strict_json(payload["body"].encode("utf-8")), size=len(raw)
        )
    return Answer(status=200, body=payload, size=len(raw))


HTTP_TEMPLATES = {
    "http_api": "http-api-rerank-plain-body.json",
    "function_url": "function-url-rerank.json",
    "function_url_root": "function-url-root-rerank.json",
    "rest_api": "rest-api-rerank.json",
}


def http_event(route: str, body_text: str, path: str | None = None) -> str:
    """An HTTP event of the given caller shape (template from events/) carrying ``body_text`` as sent."""
    event = load_event(HTTP_TEMPLATES[route])
    event["body"] = body_text
    event["isBase64Encoded"] = False
    event["headers"]["content-type"] = "application/json"
    if path is not None:
        if route == "rest_api":
            event["resource"] = event["path"] = path
            event["requestContext"]["resourcePath"] = event["requestContext"]["path"] = path
        else:
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
            event.pop("routeKey", None)
    return json.dumps(event)


def as_json_carries_it(value: Any) -> Any:
    """``value`` after a JSON round trip (an escaped high+low surrogate pair reads back as one character)."""
    return json.loads(json.dumps(value))


# --- 1. unpaired surrogates ------------------------------------------------------------------------------

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Letters, digits, punctuation, symbols, spaces, controls and surrogates; at least one surrogate per string.
HOSTILE_CHARACTERS = st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"])


@st.composite
def surrogate_texts(draw: st.DrawFn, min_size: int = 0, max_size: int = 40) -> str:
    head = draw(st.text(HOSTILE_CHARACTERS, min_size=min_size, max_size=max_size))
    position = draw(st.integers(0, len(head)))
    return head[:position] + draw(SURROGATE) + head[position:]


json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | surrogate_texts(max_size=8)
metas = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(surrogate_texts(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def passages(draw: st.DrawFn) -> Any:
    text = draw(surrogate_texts(min_size=0, max_size=60))
    if draw(st.booleans()):
        return text
    passage: dict[str, Any] = {"text": text, "id": draw(surrogate_texts(max_size=10) | st.integers(0, 99))}
    if draw(st.booleans()):
        passage["meta"] = draw(metas)
    return passage


native_payloads = st.fixed_dictionaries(
    {"query": surrogate_texts(min_size=1), "passages": st.lists(passages(), min_size=1, max_size=4)}
)


def assert_echoes(results: list[dict[str, Any]], sent: dict[str, Any]) -> None:
    """Every result carries the id, text and meta of the passage it ranks, exactly as JSON carried them."""
    expected = as_json_carries_it(sent)
    assert sorted(result["index"] for result in results) == list(range(len(expected["passages"])))
    for result in results:
        passage = expected["passages"][result["index"]]
        if isinstance(passage, str):
            passage = {"text": passage, "id": result["index"]}
        assert result["text"] == passage["text"]
        assert result["id"] == passage["id"]
        assert result.get("meta", "absent") == passage.get("meta", "absent")
        assert 0.0 <= result["score"] <= 1.0


@fixture_settings(40)
@given(payload=native_payloads, route=st.sampled_from(sorted(HTTP_TEMPLATES)))
def test_http_routes_score_surrogates_and_echo_them_as_sent(
    app: ModuleType, payload: Any, route: str
) -> None:
    # Given a body as a JavaScript client writes it (ensure_ascii: surrogates travel as \ud800 escapes)
    answer = invoke_like_lambda(app, http_event(route, json.dumps(payload)))
    # Then it is scored, and the answer is strict JSON that echoes every passage as sent
    assert answer.status == 200, answer.body
    assert_echoes(answer.body["results"], payload)


@fixture_settings(40)
@given(payload=native_payloads)
def test_direct_invokes_score_surrogates_and_echo_them_as_sent(app: ModuleType, payload: Any) -> None:
    answer = invoke_like_lambda(app, json.dumps(payload))
    assert answer.status == 200, answer.message
    assert_echoes(answer.body["results"], payload)


@fixture_settings(20)
@given(
    items=st.lists(native_payloads, min_size=1, max_size=3),
    shape=st.sampled_from(["requests", "items", "http"]),
)
def test_batches_echo_surrogates_in_every_item(app: ModuleType, items: list[Any], shape: str) -> None:
    if shape == "items":  # Step Functions Distributed Map (ItemBatcher)
        event = json.dumps({"Items": items, "BatchInput": {"return_text": True}})
    elif shape == "requests":
        event = json.dumps({"requests": items})
    else:
        event = http_event("http_api", json.dumps({"requests": items}))
    answer = invoke_like_lambda(app, event)
    assert answer.status == 200
    for response, sent in zip(answer.body["responses"], items, strict=True):
        assert_echoes(response["results"], sent)


cohere_documents = st.lists(
    surrogate_texts(min_size=1)
    | st.fixed_dictionaries(
        {"text": surrogate_texts(min_size=1)}, optional={"title": surrogate_texts(), "n": st.integers()}
    ),
    min_size=1,
    max_size=4,
)


@fixture_settings(30)
@given(query=surrogate_texts(min_size=1), documents=cohere_documents, version=st.sampled_from([1, 2]))
def test_cohere_routes_score_surrogates_and_return_documents_as_sent(
    app: ModuleType, query: str, documents: list[Any], version: int
) -> None:
    body: dict[str, Any] = {"model": "rerank-v3.5", "query": query, "documents": documents}
    if version == 1:
        body |= {"return_documents": True, "max_chunks_per_doc": 2}
    else:
        body |= {
            "max_tokens_per_doc": 8,
            "documents": [d if isinstance(d, str) else d["text"] for d in documents],
        }
    answer = invoke_like_lambda(app, http_event("http_api", json.dumps(body), f"/v{version}/rerank"))
    assert answer.status == 200, answer.body
    sent = as_json_carries_it(body["documents"])
    assert sorted(result["index"] for result in answer.body["results"]) == list(range(len(sent)))
    if version == 1:
        for result in answer.body["results"]:
            document = sent[result["index"]]
            assert result["document"] == ({"text": document} if isinstance(document, str) else document)


def test_a_lone_surrogate_is_scored_as_the_replacement_character(app: ModuleType) -> None:
    # The tokenizer reads an unpaired surrogate as U+FFFD, as if the text had been decoded with errors="replace".
    query, text = "cut emoji \ud83d here", "a chunk ending in half an emoji \ude00"
    broken = invoke_like_lambda(app, json.dumps({"query": query, "passages": [text]}))
    replaced = invoke_like_lambda(
        app,
        json.dumps({"query": replace_lone_surrogates(query), "passages": [replace_lone_surrogates(text)]}),
    )
    assert broken.body["results"][0]["score"] == replaced.body["results"][0]["score"]
    assert broken.body["results"][0]["text"] == text


# --- 2. numbers JSON carries that Python cannot round-trip ---------------------------------------------

BAD_LITERALS = ["1e309", "-1e309", "1.5E+400", "NaN", "Infinity", "-Infinity", "9" * 4301, "-" + "1" * 5000]
# What the runtime's parser (simplejson >= 3.19) lets through, as infinities; it refuses NaN / Infinity
# and integers over the digit limit itself (Runtime.UnmarshalError) before the handler runs.
RUNTIME_PARSES = ["1e309", "-1e309", "1.5E+400"]
MARK = "__BAD_NUMBER__"


@st.composite
def meta_paths(draw: st.DrawFn) -> tuple[Any, str]:
    """A nested meta value with the marker somewhere inside, and the path to it (".a[2].b" style)."""
    steps = draw(
        st.lists(st.sampled_from(["scores", "a", "x_1", "weird key"]) | st.integers(0, 2), max_size=4)
    )
    value: Any = MARK
    suffix = ""
    for step in reversed(steps):
        if isinstance(step, int):
            value = [0] * step + [value]
            suffix = f"[{step}]" + suffix
        else:
            value = {step: value}
            suffix = (f"['{step}']" if " " in step else f".{step}") + suffix
    return value, suffix


@st.composite
def native_with_bad_number(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    passages: list[Any] = [{"id": "a", "text": "first"}, "second", {"text": "third", "meta": {"k": 1}}]
    payload: dict[str, Any] = {"query": "q", "passages": passages}
    where = draw(st.sampled_from(["top_k", "id", "meta"]))
    index = draw(st.integers(0, 2))
    if where == "top_k":
        payload["top_k"] = MARK
        return payload, "top_k"
    passages[index] = {"text": f"passage {index}", where: MARK}
    if where == "meta":
        meta, suffix = draw(meta_paths())
        passages[index]["meta"] = meta
        return payload, f"passages[{index}].meta{suffix}"
    return payload, f"passages[{index}].id"


def with_literal(document: Any, literal: str) -> str:
    return json.dumps(document).replace(json.dumps(MARK), literal)


@fixture_settings(60)
@given(
    case=native_with_bad_number(),
    literal=st.sampled_from(BAD_LITERALS),
    route=st.sampled_from(sorted(HTTP_TEMPLATES)),
)
def test_http_numbers_out_of_range_are_a_400_naming_the_field(
    app: ModuleType, case: tuple[dict[str, Any], str], literal: str, route: str
) -> None:
    payload, path = case
    answer = invoke_like_lambda(app, http_event(route, with_literal(payload, literal)))
    assert (answer.status, answer.body["error"]["type"]) == (400, "InvalidRequest"), answer.body
    assert answer.message.startswith(f"{path} is "), answer.message


@fixture_settings(60)
@given(
    case=native_with_bad_number(),
    literal=st.sampled_from(RUNTIME_PARSES),
    envelope=st.sampled_from(["single", "requests", "items", "batch_input"]),
)
def test_direct_non_finite_numbers_are_invalid_requests_naming_the_field(
    app: ModuleType, case: tuple[dict[str, Any], str], literal: str, envelope: str
) -> None:
    # Given a direct invoke whose event the runtime parsed leniently (NaN, Infinity and 1e309 become floats)
    payload, path = case
    event: Any = payload
    if envelope == "requests":
        event, path = {"requests": [{"query": "q", "passages": ["x"]}, payload]}, f"requests[1].{path}"
    elif envelope == "items":
        event, path = {"Items": [payload], "BatchInput": {"top_k": 1}}, f"Items[0].{path}"
    elif envelope == "batch_input":
        event, path = (
            {"Items": [{"query": "q", "passages": ["x"]}], "BatchInput": {"top_k": MARK}},
            "BatchInput.top_k",
        )
    answer = invoke_like_lambda(app, with_literal(event, literal))
    # Then it is refused with the field's path: never echoed as NaN, never a 500
    assert type(answer.raised) is InvalidRequest, answer.body
    assert answer.message.startswith(f"{path} is "), answer.message


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"query": "q", "documents": ["a"], "top_n": MARK}, "top_n"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": MARK}, "max_tokens_per_doc"),
        ({"query": "q", "documents": ["a"], "max_chunks_per_doc": MARK}, "max_chunks_per_doc"),
        ({"query": "q", "documents": [{"text": "a"}, {"text": "b", "year": MARK}]}, "documents[1].year"),
        ({"query": "q", "documents": [{"text": "a", "m": {"s": [1, MARK]}}]}, "documents[0].m.s[1]"),
    ],
)
@pytest.mark.parametrize("literal", BAD_LITERALS)
@pytest.mark.parametrize("version", [1, 2])
def test_cohere_numbers_out_of_range_are_a_400_naming_the_field(
    app: ModuleType, body: dict[str, Any], path: str, literal: str, version: int
) -> None:
    answer = invoke_like_lambda(
        app, http_event("http_api", with_literal(body, literal), f"/v{version}/rerank")
    )
    assert answer.status == 400, answer.body
    assert answer.body["message"].startswith(f"{path} is ")


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"query": "q", "passages": [{"text": "a", "meta": {"s": float("nan")}}]}, "passages[0].meta.s"),
        ({"query": "q", "passages": [{"text": "a", "id": float("-inf")}]}, "passages[0].id"),
        ({"requests": [{"query": "q", "passages": ["a"], "top_k": float("nan")}]}, "requests[0].top_k"),
    ],
)
def test_direct_nan_and_infinities_are_invalid_requests(
    app: ModuleType, event: dict[str, Any], path: str
) -> None:
    # An older runtime parser (simplejson < 3.19, Python's json) reads NaN and Infinity literals as floats.
    with pytest.raises(InvalidRequest) as raised:
        app.lambda_handler(event, LocalContext())
    assert raised.value.public_message.startswith(f"{path} is ")


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"query": "q", "passages": [{"text": "a", "id": 10**5000}]}, "passages[0].id"),
        ({"query": "q", "passages": [{"text": "a", "meta": [-(10**4300)]}]}, "passages[0].meta[0]"),
        ({"query": "q", "passages": ["a"], "top_k": 10**4400}, "top_k"),
        (
            {"Items": [{"query": "q", "passages": ["a"]}], "BatchInput": {"top_k": 10**9999}},
            "BatchInput.top_k",
        ),
    ],
)
def test_direct_integers_over_the_digit_limit_are_invalid_requests(
    app: ModuleType, event: dict[str, Any], path: str
) -> None:
    # A Python caller (or a runtime without the int/str limit) can hand such an int over; str() of it raises.
    with pytest.raises(
        InvalidRequest, match=rf"^{path.replace('[', r'\[').replace(']', r'\]')} is an integer"
    ):
        app.lambda_handler(event, LocalContext())


def test_the_largest_integer_python_prints_is_echoed(app: ModuleType) -> None:
    big = int("9" * 4300)
    answer = invoke_like_lambda(app, json.dumps({"query": "q", "passages": [{"text": "a", "id": big}]}))
    assert answer.body["results"][0]["id"] == big


# --- 3. the 6 MB limit is on what Lambda returns -------------------------------------------------------


def test_a_quote_heavy_answer_over_6_mb_as_returned_is_a_413_that_says_return_text_false(
    configure: Callable[..., ModuleType],
) -> None:
    # Short model runs: the answer's size is the point here, not the scoring
    app = configure(ENGINE_MAX_LENGTH="32")
    # Given 1000 passages of quotes: a 3.7 MB body, which the proxy response escapes again to 6.8 MB
    passages = ['""" ' * 525] * 1000
    body = json.dumps({"query": "q", "passages": passages, "return_text": True})
    answer = invoke_like_lambda(app, http_event("http_api", body))
    assert (answer.status, answer.body["error"]["type"]) == (413, "PayloadTooLarge")
    assert '"return_text": false' in answer.message
    assert 6_700_000 < int(answer.message.split(" bytes")[0].rsplit(" ", 1)[1]) < 6_900_000
    # The same request as a direct invoke is not escaped twice: it fits, and the runtime sends all of it
    direct = invoke_like_lambda(app, body)
    assert direct.status == 200 and 3_600_000 < direct.size <= adapters.LAMBDA_PAYLOAD_LIMIT_BYTES


awkward_texts = st.text(
    st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\u2028", "é", "😀", "\ud800", "a", " "]), max_size=200
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(awkward_texts, max_size=5), status=st.sampled_from([200, 400]))
def test_measured_size_is_exactly_what_the_runtime_sends(texts: list[str], status: int) -> None:
    body = {"results": [{"text": text, "meta": {text: [text]}} for text in texts]}
    response = adapters.http_response(status, body, correlation_id="abc-1")
    sent = MARSHALLER.marshal_response(response)[0].encode("utf-8")
    assert adapters.runtime_payload_size(response) == len(sent)
    assert adapters.http_payload_size(response) == len(sent)
    payload, size = adapters.direct_payload(body)
    sent_direct = MARSHALLER.marshal_response(payload)[0]
    assert size == len(sent_direct if isinstance(sent_direct, bytes) else sent_direct.encode("utf-8"))
    assert strict_json(sent_direct if isinstance(sent_direct, bytes) else sent_direct.encode("utf-8")) == (
        as_json_carries_it(body)
    )


@fixture_settings(25)
@given(
    texts=st.lists(awkward_texts.filter(bool), min_size=1, max_size=4),
    route=st.sampled_from(["http_api", "direct"]),
)
def test_an_answer_fits_exactly_when_what_lambda_returns_fits(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch, texts: list[str], route: str
) -> None:
    # Given the size the runtime sends for this answer
    body = json.dumps({"query": "q", "passages": texts})
    event = http_event(route, body) if route != "direct" else body
    full = invoke_like_lambda(app, event)
    assert full.status == 200
    # When the limit is exactly that size, it is answered; one byte less, it is a clear 413
    with monkeypatch.context() as patch:
        patch.setattr(adapters, "LAMBDA_PAYLOAD_LIMIT_BYTES", full.size)
        assert invoke_like_lambda(app, event).status == 200
        patch.setattr(adapters, "LAMBDA_PAYLOAD_LIMIT_BYTES", full.size - 1)
        refused = invoke_like_lambda(app, event)
    assert refused.status == 413 and "return_text" in refused.message


@pytest.mark.parametrize("request_id", ["\ud800", "id with spaces", "x" * 129])
def test_a_crafted_request_id_is_not_echoed_in_a_header(app: ModuleType, request_id: str) -> None:
    event = json.loads(http_event("http_api", json.dumps({"query": "q", "passages": ["a"]})))
    event["headers"].pop("x-correlation-id", None)  # else the header is the correlation id
    event["requestContext"]["requestId"] = request_id
    answer = invoke_like_lambda(app, json.dumps(event))
    assert answer.status == 200
