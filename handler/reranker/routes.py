"""Which operation answers a call, and in which dialect: exact method + path routes, then the body decides.

A route has a dialect (its errors' words before any body is read) and may share its path with dialects
that claim a body by its shape: ``POST /rerank`` answers TEI's API for a body with ``texts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reranker import service
from reranker.calls import Call, CallerShape
from reranker.cohere import COHERE_V1, COHERE_V2
from reranker.dialect import AnyDialect
from reranker.errors import MethodNotAllowed, RouteNotFound
from reranker.native import NATIVE
from reranker.tei import TEI

type Operation = Callable[[AnyDialect, object, Call], object]


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

    def __init__(self, routes: list[Route], *, default_dialect: AnyDialect = NATIVE) -> None:
        self._routes = {(route.method, route.path): route for route in routes}
        self._default_dialect = default_dialect

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


ROUTER = Router(
    [
        Route("POST", "/rerank", service.rerank, NATIVE, alternatives=(TEI,)),
        Route("GET", "/health", service.health, reads_body=False),
        Route("POST", "/v1/rerank", service.rerank, COHERE_V1),
        Route("POST", "/v2/rerank", service.rerank, COHERE_V2),
        Route("GET", "/openapi.json", service.openapi_document, reads_body=False),
        # A Function URL has no API Gateway routes: its callers post to the root.
        Route("POST", "/", service.rerank, NATIVE, alternatives=(TEI,), callers=("function_url",)),
    ]
)
# Direct invokes (Step Functions) carry the native request itself, or a batch of them.
DIRECT = Route("INVOKE", "", service.rerank, NATIVE)
