"""Which operation answers an HTTP request, and in which dialect: exact method + path, then the body decides.

A route has a dialect (its errors' words before any body is read) and may share its path with dialects
that claim a body by its shape (``POST /rerank`` answers TEI's API for a body with ``texts``). The table of
routes is api.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reranker.adapters import HttpRequest
from reranker.calls import Call, CallerShape, report_error
from reranker.dialect import AnyDialect, Outcome
from reranker.errors import MethodNotAllowed, RouteNotFound
from reranker.native import NATIVE

type Operation = Callable[[AnyDialect, object, Call], object]
type Authenticate = Callable[[Mapping[str, str]], None]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: Operation
    dialect: AnyDialect = NATIVE
    alternatives: tuple[AnyDialect, ...] = ()  # dialects that claim a body on this route by its shape
    reads_body: bool = True
    callers: tuple[CallerShape, ...] = ()  # the HTTP shapes this route exists for; empty: all of them

    def dialect_for(self, payload: object) -> AnyDialect:
        """The first alternative that claims this body, else the route's own dialect."""
        for alternative in self.alternatives:
            if alternative.claims(payload):
                return alternative
        return self.dialect


class Router:
    """Exact method + path routes; 404 for an unknown path, 405 (with the allowed methods) for a wrong method."""

    def __init__(
        self,
        routes: list[Route],
        *,
        authenticate: Authenticate | None = None,
        default_dialect: AnyDialect = NATIVE,
    ) -> None:
        self._routes = {(route.method, route.path): route for route in routes}
        self._authenticate = authenticate
        self._default_dialect = default_dialect

    def dispatch(self, request: HttpRequest, context: Any) -> Outcome:
        """Route, authenticate, read the body, pick the dialect, run the operation: its answer or public error."""
        dialect = self.dialect_of(
            request.path, request.shape
        )  # errors before the body speak the route's words
        try:
            route = self.resolve(request.method, request.path, request.shape)
            if self._authenticate is not None:
                self._authenticate(request.headers)
            payload: object = None
            if route.reads_body:
                if request.body_error is not None:
                    raise request.body_error
                payload = request.payload
            dialect = route.dialect_for(payload)
            call = Call(request.shape, context, request.headers, request.correlation_id)
            return Outcome(dialect, route.operation(dialect, payload, call))
        except Exception as exc:  # noqa: BLE001 - every failure is answered, in the dialect's words
            return Outcome(dialect, error=report_error(exc))

    @property
    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def routes_for(self, shape: CallerShape | None) -> list[Route]:
        """The routes a caller of this shape has (None: every route)."""
        return [route for route in self._routes.values() if _serves(route, shape)]

    def resolve(self, method: str, path: str, shape: CallerShape | None = None) -> Route:
        route = self._routes.get((method, path))
        if route is not None and _serves(route, shape):
            return route
        routes = self.routes_for(shape)
        allowed = tuple(sorted(known.method for known in routes if known.path == path))
        if allowed:
            raise MethodNotAllowed(
                f"{path} does not accept {method or 'this method'}; use {', '.join(allowed)}", allowed
            )
        known = ", ".join(f"{route.method} {route.path}" for route in routes)
        raise RouteNotFound(f"no route for {_printable(path)}; routes: {known}")

    def dialect_of(self, path: str, shape: CallerShape | None = None) -> AnyDialect:
        """Errors of a known path are worded in its routes' dialect (405 included); others in the default."""
        for route in self.routes_for(shape):
            if route.path == path:
                return route.dialect
        return self._default_dialect


def _serves(route: Route, shape: CallerShape | None) -> bool:
    return shape is None or not route.callers or shape in route.callers


def _printable(path: str) -> str:
    shown = path if len(path) <= 80 else path[:80] + "..."
    return shown.encode("ascii", "backslashreplace").decode("ascii")
