"""Field declarations from which both a request's checks and its OpenAPI schema derive (see contract.py).

A ``Field`` checks a value and words the complaint from its own declaration ("top_k must be a positive integer,
got 0"), and renders the same declaration as JSON Schema. Which fields a wire format has, in what order they are
checked and what happens to them after is the parser's business (schemas.py, cohere.py, tei.py); what a field
accepts is said here, once. A bound that is a deployment setting (``limit``: a ``Limits`` attribute) is checked
against the deployment's value (413 beyond it) and documented with its default.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reranker.errors import InvalidRequest, PayloadTooLarge

type JsonType = Literal["string", "integer", "number", "boolean", "array", "object"]
type JsonSchema = dict[str, Any]

_MISSING: Any = object()
# A description may name a limit's default as {max_passages}; it is filled in from the defaults it documents
# (compiled when a schema is rendered, never at the function's import).
_LIMIT_PLACEHOLDER = r"\{(max_[a-z_]+)\}"
_TYPE_NOUNS: Mapping[str, str] = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "list",
    "object": "object",
}


def ref(name: str) -> JsonSchema:
    """A reference to another component schema of the OpenAPI document."""
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Field:
    """One field of a request or response object, as its checks and its JSON Schema both read it.

    ``types`` empty: any JSON value. ``nullable``: null is allowed, and in a request reads as absent (the
    default). ``null_is_missing``: a required field sent as null is reported missing rather than mistyped.
    ``minimum`` / ``maximum`` bound numbers; ``min_length`` / ``max_length`` bound a string's characters or a
    list's entries. ``limit`` names the ``Limits`` attribute that bounds the length per deployment (413).
    ``items``: a list's entries, a type name (checked) or a schema (documented; the parser reads them).
    ``got``: what a complaint echoes of the value (its JSON type, or the number itself).
    """

    name: str
    types: tuple[JsonType, ...] = ()
    description: str = ""
    required: bool = False
    required_hint: str = ""
    nullable: bool = False
    null_is_missing: bool = False
    default: Any = _MISSING
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    not_blank: bool = False
    enum: tuple[str, ...] = ()
    const: Any = _MISSING
    items: JsonType | JsonSchema | Shape | None = None
    shape: Shape | None = None  # an object field's own fields, documented inline
    limit: str | None = None
    got: Literal["", "type", "value"] = ""
    schema_extra: JsonSchema = field(default_factory=dict)

    # --- checks -----------------------------------------------------------------------------------------

    def require(self, payload: Mapping[str, object], where: str = "") -> None:
        """InvalidRequest unless the field is there (not null, when null counts as missing)."""
        if self.name not in payload or (payload[self.name] is None and self.null_is_missing):
            raise InvalidRequest(f"{self._path(where)} is required{self.required_hint}")

    def read(self, payload: Mapping[str, object], where: str = "") -> Any:
        """The field's checked value in ``payload``; absent (or null, where null is absent): its default."""
        value = payload.get(self.name)
        if value is None and (self.name not in payload or self.nullable or self.null_is_missing):
            if self.required:
                self.require(payload, where)
            return None if self.default is _MISSING else self.default
        return self.check(value, self._path(where))

    def check(self, value: object, name: str | None = None) -> Any:
        """``value`` if the declaration accepts it (an integral float as an int); InvalidRequest otherwise."""
        value = self.normalized(value)
        if not self.accepts(value):
            raise InvalidRequest(self.complaint(value, self.name if name is None else name))
        return value

    def normalized(self, value: object) -> object:
        # JSON (and JSON Schema's "integer") does not tell 5.0 from 5; Python clients send 5.0.
        if self.types == ("integer",) and isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def accepts(self, value: object) -> bool:
        """Type, item types, enum and the fixed bounds (not ``not_blank`` nor the deployment's ``limit``)."""
        if self.enum:
            return value in self.enum
        if self.types and not any(_is_type(value, kind) for kind in self.types):
            return False
        if isinstance(value, list) and isinstance(self.items, str):
            item_type = self.items
            if not all(_is_type(item, item_type) for item in value):
                return False
        if isinstance(value, str | list):
            return (self.min_length is None or len(value) >= self.min_length) and (
                self.max_length is None or len(value) <= self.max_length
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (self.minimum is None or value >= self.minimum) and (
                self.maximum is None or value <= self.maximum
            )
        return True

    def complaint(self, value: object, name: str) -> str:
        message = f"{name} must be {self.requirement}"
        if self.got == "type":
            return f"{message}, got {json_type(value)}"
        if self.got == "value":
            return f"{message}, got {describe_value(value)}"
        return message

    @property
    def requirement(self) -> str:
        """What the field must be, in words derived from the declaration."""
        if self.enum:
            return f"one of {', '.join(self.enum)}"
        wording = _REQUIREMENT_WORDINGS.get(self.types[0]) if len(self.types) == 1 else None
        return (wording(self) if wording else None) or _one_of_types(self.types)

    def check_list(self, value: object, name: str | None = None) -> list[Any]:
        """A list whose entries are each of the declared item type; the complaint names the first that is not."""
        shown = self.name if name is None else name
        noun = _TYPE_NOUNS[self.items] if isinstance(self.items, str) else "JSON value"
        if not isinstance(value, list):
            raise InvalidRequest(f"{shown} must be a list of {noun}s")
        if isinstance(self.items, str):
            for index, item in enumerate(value):
                if not _is_type(item, self.items):
                    raise InvalidRequest(f"{shown}[{index}] must be a {noun}")
        return value

    def ensure_not_blank(self, value: str, name: str | None = None) -> None:
        if self.not_blank and not value.strip():
            raise InvalidRequest(f"{self.name if name is None else name} must not be empty")

    def ensure_within_limit(self, value: str | list[Any], limits: object, name: str | None = None) -> None:
        """PayloadTooLarge when ``value`` is longer than this deployment's ``limit``."""
        if self.limit is None:
            return
        limit = int(getattr(limits, self.limit))
        if len(value) > limit:
            unit = "characters" if isinstance(value, str) else "entries"
            shown = self.name if name is None else name
            raise PayloadTooLarge(f"{shown} has {len(value)} {unit}; the limit is {limit}")

    def _path(self, where: str) -> str:
        return f"{where}.{self.name}" if where else self.name

    # --- JSON Schema ------------------------------------------------------------------------------------

    def json_schema(self, limits: object) -> JsonSchema:
        """The field's JSON Schema (OpenAPI 3.1), ``limit`` bounds at ``limits``' values (the defaults)."""
        schema: JsonSchema = {}
        if self.types:
            kinds: list[str] = list(self.types) + (["null"] if self.nullable else [])
            schema["type"] = kinds[0] if len(kinds) == 1 else kinds
        if self.enum:
            schema["enum"] = [*self.enum, *([None] if self.nullable else [])]
        if self.const is not _MISSING:
            schema["const"] = self.const
        length_bound = None if self.limit is None else int(getattr(limits, self.limit))
        max_length = self.max_length if length_bound is None else length_bound
        if "array" in self.types:
            _put(schema, "minItems", self.min_length)
            _put(schema, "maxItems", max_length)
            if isinstance(self.items, str):
                schema["items"] = {"type": self.items}
            elif isinstance(self.items, Shape):
                schema["items"] = self.items.json_schema(limits)
            elif self.items is not None:
                schema["items"] = self.items
        elif "string" in self.types:
            _put(schema, "minLength", 1 if self.not_blank else self.min_length)
            _put(schema, "maxLength", max_length)
            if self.not_blank:
                schema["pattern"] = r"\S"
        _put(schema, "minimum", self.minimum)
        _put(schema, "maximum", self.maximum)
        if self.default is not _MISSING:
            schema["default"] = self.default
        if self.shape is not None:
            schema.update(self.shape.json_schema(limits))
        schema.update(self.schema_extra)
        if self.description:
            schema["description"] = _fill_limits(self.description, limits)
        return schema


@dataclass(frozen=True)
class Shape:
    """A JSON object of the contract: its fields in order, and whether unknown fields are refused."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    closed: bool = False  # unknown fields are refused (documented as additionalProperties: false)
    schema_extra: JsonSchema = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.fields)

    def __getitem__(self, name: str) -> Field:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Field]:
        return {entry.name: entry for entry in self.fields}

    def json_schema(self, limits: object) -> JsonSchema:
        schema: JsonSchema = {"type": "object"}
        if self.closed:
            schema["additionalProperties"] = False
        required = [entry.name for entry in self.fields if entry.required]
        if required:
            schema["required"] = required
        schema.update(self.schema_extra)
        if self.description:
            schema["description"] = _fill_limits(self.description, limits)
        schema["properties"] = {entry.name: entry.json_schema(limits) for entry in self.fields}
        return schema


@dataclass(frozen=True)
class Schema:
    """A component that is not an object of fields (a union, a list): its JSON Schema as written."""

    name: str
    schema: JsonSchema

    def json_schema(self, limits: object) -> JsonSchema:
        return dict(self.schema)


type Component = Shape | Schema


def _integer_requirement(declared: Field) -> str:
    if declared.minimum is not None and declared.maximum is not None:
        return f"an integer between {declared.minimum} and {declared.maximum}"
    return "a positive integer" if declared.minimum == 1 else "an integer"


def _number_requirement(declared: Field) -> str | None:
    if declared.minimum is not None and declared.maximum is not None:
        return f"a number from {declared.minimum} to {declared.maximum}"
    return None


def _string_requirement(declared: Field) -> str | None:
    if declared.min_length is not None and declared.max_length is not None:
        return f"a string of {declared.min_length} to {declared.max_length} characters"
    return None


def _array_requirement(declared: Field) -> str | None:
    if not isinstance(declared.items, str):
        return None
    emptiness = "non-empty " if declared.min_length == 1 else ""
    return f"a {emptiness}list of {_TYPE_NOUNS[declared.items]}s"


_REQUIREMENT_WORDINGS: Mapping[str, Callable[[Field], str | None]] = {
    "boolean": lambda _: "true or false",
    "integer": _integer_requirement,
    "number": _number_requirement,
    "string": _string_requirement,
    "array": _array_requirement,
}


def _one_of_types(types: tuple[JsonType, ...]) -> str:
    """'a string', 'a list', 'a string, number or boolean'; any JSON value when no type is declared."""
    nouns = [_TYPE_NOUNS[kind] for kind in types] or ["JSON value"]
    listed = nouns[0] if len(nouns) == 1 else f"{', '.join(nouns[:-1])} or {nouns[-1]}"
    return f"{'an' if listed[0] in 'aeiou' else 'a'} {listed}"


def _put(schema: JsonSchema, key: str, value: object) -> None:
    if value is not None:
        schema[key] = value


def _fill_limits(text: str, limits: object) -> str:
    return re.sub(_LIMIT_PLACEHOLDER, lambda match: str(getattr(limits, match[1])), text)


def _is_type(value: object, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, Mapping)


# --- how complaints name a value ----------------------------------------------------------------------------

_JSON_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (list, "a list"),
    (Mapping, "an object"),
)


def json_type(value: object) -> str:
    if value is None:
        return "null"
    for kinds, name in _JSON_TYPE_NAMES:
        if isinstance(value, kinds):
            return name
    return type(value).__name__


def describe_value(value: object) -> str:
    """Numbers are safe and useful to echo; anything else is described by its type only."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return json_type(value)


def quote_key(key: object) -> str:
    shown = str(key)
    return repr(shown if len(shown) <= 40 else shown[:40] + "...")
