"""Invocation shapes <-> the service: detect the caller, read an event into a request, write the answer.

One function serves API Gateway HTTP APIs (payload 2.0), Lambda Function URLs (the same payload), API
Gateway REST APIs (payload 1.0) and direct invokes (Step Functions), so the shape is detected here instead
of using one Powertools resolver per shape (each is fixed to one event shape and imports ~0.2 s more).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reranker.calls import CallerShape, report_error
from reranker.dialect import AnyDialect, Outcome
from reranker.errors import (
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RerankerError,
    Unauthorized,
    UnsupportedMediaType,
)
from reranker.json_text import encode_json
from reranker.schemas import LAMBDA_PAYLOAD_LIMIT_BYTES, decode_json, ensure_representable_numbers
from reranker.text import escape_lone_surrogates

CORRELATION_HEADER = "x-correlation-id"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


# --- reading an event ------------------------------------------------------------------------------


def read_event(event: object) -> HttpRequest | DirectRequest:
    """The event as a request of the caller's shape; a body that cannot be read is kept as its error.

    The error is raised only where it is the answer: after routing and authentication for HTTP, so a
    404, 405 or 401 still wins over a bad body.
    """
    shape = detect_shape(event)
    if shape == "direct" or not isinstance(event, Mapping):
        return read_direct(event)
    return read_http_event(event, shape)


# --- detecting the caller --------------------------------------------------------------------------


def detect_shape(event: object) -> CallerShape:
    """Which caller sent this event; anything that is not an HTTP proxy event is a direct invoke."""
    if not isinstance(event, Mapping):
        return "direct"
    context = event.get("requestContext")
    if not isinstance(context, Mapping):
        return "direct"
    if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
        domain = context.get("domainName")
        if isinstance(domain, str) and ".lambda-url." in domain:
            return "function_url"
        return "http_api"
    if isinstance(event.get("httpMethod"), str):
        return "rest_api"  # REST API proxy, or an HTTP API with payload format 1.0
    return "direct"


# --- HTTP events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    shape: CallerShape
    method: str
    path: str  # the route path: no stage prefix, no custom-domain base path where the event tells us
    headers: Mapping[str, str]  # lower-cased names
    body: str | None
    is_base64: bool
    request_id: str | None
    correlation_id: str | None
    payload: object = None  # the decoded JSON body
    body_error: Exception | None = None  # why the body could not be read (raised by routes that read it)


def read_http_event(event: Mapping[str, Any], shape: CallerShape) -> HttpRequest:
    context = _mapping(event.get("requestContext"))
    headers = _lower_headers(event)
    if shape == "rest_api":
        method = str(event.get("httpMethod", "")).upper()
        path = _rest_path(event, context)
    else:
        method = str(_mapping(context.get("http")).get("method", "")).upper()
        path = _http_api_path(event, context)
    request_id = context.get("requestId")
    # Echoed in a header: only the characters API Gateway and Lambda use (a crafted event could hold anything).
    request_id = request_id if isinstance(request_id, str) and _CORRELATION_ID.match(request_id) else None
    header_id = headers.get(CORRELATION_HEADER)
    correlation_id = header_id if header_id and _CORRELATION_ID.match(header_id) else request_id
    body = event.get("body")
    request = HttpRequest(
        shape=shape,
        method=method,
        path=_normalize_path(path),
        headers=headers,
        body=body if isinstance(body, str) else None,
        is_base64=event.get("isBase64Encoded") is True,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    try:
        return replace(request, payload=read_json_body(request))
    except Exception as exc:  # noqa: BLE001 - kept, and raised only by a route that reads the body
        return replace(request, body_error=exc)


def _http_api_path(event: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """Payload 2.0: the routeKey template when there is one, else rawPath without a named stage."""
    route_key = event.get("routeKey")
    if isinstance(route_key, str) and " " in route_key:
        filled = _fill_template(route_key.split(" ", 1)[1], event.get("pathParameters"))
        if filled is not None:
            return filled
    raw_path = event.get("rawPath")
    if not isinstance(raw_path, str):
        raw_path = str(_mapping(context.get("http")).get("path", "/"))
    return _strip_stage(raw_path, context.get("stage"))


def _rest_path(event: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """Payload 1.0: the resource template filled with path parameters (immune to stages and base paths)."""
    resource = event.get("resource")
    if isinstance(resource, str) and resource.startswith("/"):
        filled = _fill_template(resource, event.get("pathParameters"))
        if filled is not None:
            return filled
    path = event.get("path")
    # REST APIs leave the stage out of `path`; HTTP APIs sending payload 1.0 keep it in.
    return _strip_stage(path if isinstance(path, str) else "/", context.get("stage"))


_TEMPLATE_PARAMETER = re.compile(r"\{([^{}+]+)\+?\}")


def _fill_template(template: str, parameters: object) -> str | None:
    values = parameters if isinstance(parameters, Mapping) else {}
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if not isinstance(value, str):
            missing = True
            return ""
        return value

    filled = _TEMPLATE_PARAMETER.sub(substitute, template)
    return None if missing else filled


def _strip_stage(path: str, stage: object) -> str:
    if isinstance(stage, str) and stage and stage != "$default":
        prefix = "/" + stage
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :] or "/"
    return path


def _normalize_path(path: str) -> str:
    path = _SLASHES.sub("/", "/" + path)
    return path.rstrip("/") or "/"


_SLASHES = re.compile(r"/{2,}")


def _lower_headers(event: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    multi = event.get("multiValueHeaders")
    if isinstance(multi, Mapping):
        for name, values in multi.items():
            if isinstance(values, list) and values:
                headers[str(name).lower()] = ",".join(str(value) for value in values)
    single = event.get("headers")
    if isinstance(single, Mapping):
        for name, value in single.items():
            if isinstance(value, str):
                headers[str(name).lower()] = value
    return headers


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def read_json_body(request: HttpRequest) -> object:
    """The request body as JSON: checks the media type, base64, UTF-8 and JSON syntax."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(
                "content-type must be application/json (or a +json type); send the header "
                "'Content-Type: application/json'"
            )
    if request.body is None or request.body == "":
        raise InvalidRequest("request body is empty; expected a JSON object")
    raw: str | bytes = request.body
    if request.is_base64:
        try:
            raw = base64.b64decode(request.body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest("request body is marked base64-encoded but is not valid base64") from exc
    return decode_json(raw)


# --- answers ---------------------------------------------------------------------------------------


def write_http(outcome: Outcome, correlation_id: str | None) -> dict[str, Any]:
    """The proxy response of an outcome: its answer, or its error, in its dialect's words."""
    if outcome.error is None:
        try:
            return write_answer(outcome.answer, outcome.dialect, correlation_id)
        except Exception as exc:  # noqa: BLE001 - an answer Lambda could not return is an error answer
            return write_error(report_error(exc), outcome.dialect, correlation_id)
    return write_error(outcome.error, outcome.dialect, correlation_id)


def write_answer(answer: object, dialect: AnyDialect, correlation_id: str | None) -> dict[str, Any]:
    """A 200 proxy response, or PayloadTooLarge (in the dialect's advice) when Lambda could not return it."""
    response = http_response(200, answer, correlation_id=correlation_id)
    ensure_response_fits(http_payload_size(response), dialect.size_advice)
    return response


def write_error(error: RerankerError, dialect: AnyDialect, correlation_id: str | None) -> dict[str, Any]:
    """A public error as the dialect's clients read it, with the headers its status calls for."""
    status, body = dialect.error_body(error)
    extra: dict[str, str] | None = None
    if isinstance(error, MethodNotAllowed) and error.allowed:
        extra = {"Allow": ", ".join(error.allowed)}
    elif isinstance(error, Unauthorized):
        extra = {"WWW-Authenticate": "Bearer"}  # RFC 6750: the scheme a 401 expects
    return http_response(status, body, correlation_id=correlation_id, extra_headers=extra)


def write_direct(answer: object, dialect: AnyDialect) -> dict[str, Any] | bytes:
    """What a direct invoke returns (direct_payload), or PayloadTooLarge when Lambda could not return it."""
    if not isinstance(answer, dict):
        raise TypeError(f"a direct invoke answers a JSON object, not {type(answer).__name__}")
    response, size = direct_payload(answer)
    ensure_response_fits(size, dialect.size_advice)
    return response


def http_response(
    status: int,
    body: object,  # a JSON object, or a list (TEI's rerank answer)
    *,
    correlation_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The proxy response; payload 1.0 and 2.0 (and Function URLs) all accept this form."""
    headers = {"Content-Type": "application/json"}
    if correlation_id:
        headers["X-Correlation-Id"] = correlation_id
    if extra_headers:
        headers.update(extra_headers)
    return {
        "statusCode": status,
        "headers": headers,
        "body": encode_json(body),
        "isBase64Encoded": False,
    }


def direct_payload(response: dict[str, Any]) -> tuple[dict[str, Any] | bytes, int]:
    """What a direct invoke returns, and its size as the runtime sends it (runtime_payload_size).

    That is the answer itself, or its JSON bytes when the runtime could not send it.

    The Python runtime (awslambdaric) serializes a returned object with ``ensure_ascii=False`` and then encodes
    it as UTF-8, which fails on an unpaired surrogate the caller sent (an echoed id or meta). Returned bytes
    are sent unchanged, so such an answer goes out as strict JSON with the surrogate escaped as the caller
    wrote it.
    """
    text = json.dumps(response, ensure_ascii=False, allow_nan=False)
    try:
        return response, len(text.encode("utf-8"))
    except UnicodeEncodeError:
        payload = escape_lone_surrogates(text).encode("utf-8")
        return payload, len(payload)


def runtime_payload_size(payload: Mapping[str, Any] | bytes) -> int:
    """The bytes the Python runtime sends to Lambda for this return value (what the 6 MB limit counts).

    awslambdaric serializes with simplejson, ``ensure_ascii=False`` and the default ``", "`` / ``": "``
    separators, which the standard library reproduces byte for byte; an HTTP body string is escaped again.
    """
    if isinstance(payload, bytes):
        return len(payload)
    return len(json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8"))


def ensure_response_fits(size: int, advice: str) -> None:
    """Lambda refuses (and API Gateway turns into a bare 502) any response above 6 MB: say so clearly."""
    if size > LAMBDA_PAYLOAD_LIMIT_BYTES:
        raise PayloadTooLarge(
            f"the answer would be {size} bytes as Lambda returns it, above its "
            f"{LAMBDA_PAYLOAD_LIMIT_BYTES}-byte (6 MB) limit; {advice}"
        )


def http_payload_size(response: Mapping[str, Any]) -> int:
    """runtime_payload_size of a proxy response, without serializing its body a second time.

    The body is JSON text from encode_json, so it holds no raw control characters: escaping it again only
    doubles its quotes and backslashes.
    """
    body: str = response["body"]
    envelope = runtime_payload_size({**response, "body": ""})
    return envelope + len(body.encode("utf-8")) + body.count('"') + body.count("\\")


@dataclass(frozen=True)
class DirectRequest:
    """A direct invoke (Step Functions, the SDK): the event is the payload."""

    payload: object
    correlation_id: str | None
    body_error: Exception | None = None
    shape: CallerShape = "direct"


def read_direct(event: object) -> DirectRequest:
    """The event as the payload, once every number in it can be answered as strict JSON.

    The runtime parses the event leniently: ``NaN`` and ``Infinity`` are accepted and ``1e309`` becomes an
    infinity, none of which a JSON answer can echo.
    """
    correlation_id = direct_correlation_id(event)
    try:
        ensure_representable_numbers(event)
    except Exception as exc:  # noqa: BLE001 - raised when the invoke is answered, after logging context is set
        return DirectRequest(payload=event, correlation_id=correlation_id, body_error=exc)
    return DirectRequest(payload=event, correlation_id=correlation_id)


def direct_correlation_id(event: object) -> str | None:
    if isinstance(event, Mapping):
        value = event.get("correlation_id")
        if isinstance(value, str) and _CORRELATION_ID.match(value):
            return value
    return None
