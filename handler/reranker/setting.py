"""How one setting is declared (variable, default, bounds, doc) and read from the environment, every problem kept."""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

Kind = Literal["integer", "number", "boolean", "text", "path", "choice"]
KINDS: dict[object, Kind] = {bool: "boolean", int: "integer", float: "number", str: "text", Path: "path"}
# Bounds a declaration leaves out: counts and sizes start at 1, durations and amounts at 0.
INTEGER_MINIMUM = 1
NUMBER_MINIMUM = 0.0
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

_METADATA_KEY = "reranker.setting"


@dataclass(frozen=True)
class _Declaration:
    variable: str
    doc: str
    minimum: float | None
    maximum: float | None
    shown_default: str | None
    shown_allowed: str | None


def setting[T](
    variable: str,
    default: T,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    shown_default: str | None = None,
    shown_allowed: str | None = None,
) -> T:
    """A dataclass field that declares one setting; its type (and a Literal's allowed values) is the annotation.

    ``minimum`` defaults to 1 for integers and 0 for numbers; ``maximum`` to none. ``shown_default`` and
    ``shown_allowed`` only change what the documentation says, for a default derived at read time or a
    value checked beyond its type.
    """
    declaration = _Declaration(variable, doc, minimum, maximum, shown_default, shown_allowed)
    return field(default=default, metadata={_METADATA_KEY: declaration})


@dataclass(frozen=True)
class DeclaredSetting:
    """One setting as declared: the attribute, its environment variable, kind, default, bounds and doc."""

    name: str
    variable: str
    kind: Kind
    default: Any
    doc: str
    optional: bool = False  # unset (or blank) means None
    minimum: float = 0  # integers and numbers only; an int for integers
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    shown_default: str | None = None
    shown_allowed: str | None = None

    def read(self, reader: EnvironmentReader, default: Any) -> Any:
        """This setting's value from the environment, ``default`` when unset or (with a problem noted) invalid."""
        match self.kind:
            case "integer":
                maximum = None if self.maximum is None else int(self.maximum)
                return reader.integer(self.variable, default, minimum=int(self.minimum), maximum=maximum)
            case "number":
                return reader.number(self.variable, default, minimum=self.minimum, maximum=self.maximum)
            case "boolean":
                return reader.boolean(self.variable, default=default)
            case "choice":
                return reader.choice(self.variable, default, self.choices)
            case "path":
                path = reader.path(self.variable)
                return default if path is None else path
            case "text":
                text = reader.optional(self.variable)
                return default if text is None else text


def declared_settings(settings_class: type) -> tuple[DeclaredSetting, ...]:
    """Every setting a dataclass declares with ``setting()``, in declaration order."""
    hints = get_type_hints(settings_class)
    declared = []
    for item in fields(settings_class):
        declaration = item.metadata.get(_METADATA_KEY)
        if not isinstance(declaration, _Declaration):
            raise TypeError(f"{settings_class.__name__}.{item.name} is not declared with setting()")
        kind, optional, choices = _kind_of(hints[item.name], item.name)
        minimum = declaration.minimum
        if minimum is None:
            minimum = INTEGER_MINIMUM if kind == "integer" else NUMBER_MINIMUM
        if kind == "integer" and not all(
            isinstance(bound, int) for bound in (minimum, declaration.maximum) if bound is not None
        ):
            raise TypeError(f"{item.name}: an integer setting needs integer bounds")
        declared.append(
            DeclaredSetting(
                name=item.name,
                variable=declaration.variable,
                kind=kind,
                default=item.default,
                doc=declaration.doc,
                optional=optional,
                minimum=minimum,
                maximum=declaration.maximum,
                choices=choices,
                shown_default=declaration.shown_default,
                shown_allowed=declaration.shown_allowed,
            )
        )
    return tuple(declared)


def _kind_of(annotation: Any, name: str) -> tuple[Kind, bool, tuple[str, ...]]:
    """(kind, optional, allowed values) of a setting's annotation: a scalar, a Literal of strings, or X | None."""
    optional = False
    if isinstance(annotation, types.UnionType):
        rest = [member for member in get_args(annotation) if member is not type(None)]
        if len(rest) != 1 or rest[0] not in (str, Path):
            raise TypeError(f"{name}: only str | None and Path | None settings may be unset")
        annotation, optional = rest[0], True
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if not all(isinstance(choice, str) for choice in choices):
            raise TypeError(f"{name}: a Literal setting allows strings only")
        return "choice", optional, choices
    if annotation not in KINDS:
        raise TypeError(f"{name}: settings of type {annotation!r} cannot be read from the environment")
    return KINDS[annotation], optional, ()


class EnvironmentReader:
    """Parses environment values and collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def _parse[T](self, name: str, default: T, convert: Callable[[str], T], expected: str) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            self.problems.append(f"{name} must be {expected}, got {raw!r}")
            return default

    def integer(
        self, name: str, default: int, *, minimum: int = INTEGER_MINIMUM, maximum: int | None = None
    ) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            self.problems.append(f"{name} must be {bounds}, got {value}")
            return default
        return value

    def number(
        self, name: str, default: float, *, minimum: float = NUMBER_MINIMUM, maximum: float | None = None
    ) -> float:
        value = self._parse(name, default, float, "a number")
        # "not >=" also refuses nan; "inf" fails the maximum when there is one.
        if not value >= minimum or (maximum is not None and not value <= maximum):
            bounds = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
            self.problems.append(f"{name} must be {bounds}, got {value}")
            return default
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def choice[T](self, name: str, default: T, allowed: tuple[T, ...]) -> T:
        raw = self.optional(name)
        if raw is None:
            return default
        for option in allowed:
            if raw == option:
                return option
        self.problems.append(f"{name} must be one of {', '.join(map(str, allowed))}, got {raw!r}")
        return default
