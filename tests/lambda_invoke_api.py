"""A local stand-in for the Lambda Invoke REST API, so boto3's real lambda client can invoke lambda_handler.

``POST /2015-03-31/functions/{name}/invocations`` runs the handler of that name with a fresh context; a raised
error becomes what Lambda sends for an unhandled one (200, ``X-Amz-Function-Error: Unhandled``, ``errorType`` =
the class name); an unknown name gets Lambda's 404 ``ResourceNotFoundException``; a handler that raises
``InvokeApiError`` gets that API error instead (429 ``TooManyRequestsException``: a throttle). Point boto3 at it
with ``AWS_ENDPOINT_URL_LAMBDA`` (or ``endpoint_url=``). tests/handler_processes.py serves real handler processes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from tools.invoke import LocalContext

type Handler = Callable[[Any, Any], Any]
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class InvokeApiError(Exception):
    """An error of the Invoke API itself (not of the function): its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


THROTTLED = (429, "TooManyRequestsException", "Rate Exceeded.")


def invoke_api(functions: Mapping[str, Handler], *, timeout_ms: int = 30_000) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``functions`` (name or ARN -> handler) for tests.loopback.serving."""

    class InvokeApi(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # botocore keeps connections alive

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            match = _INVOKE_PATH.match(self.path.split("?", 1)[0])
            name = unquote(match["name"]) if match else ""
            handler = functions.get(name)
            if handler is None:
                message = {"Type": "User", "message": f"Function not found: {name}"}
                self._send(404, message, {"x-amzn-ErrorType": "ResourceNotFoundException"})
                return
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            try:
                event = json.loads(payload or b"{}")
                answer = handler(event, _context(name, timeout_ms))
            except InvokeApiError as exc:
                body = {"Type": "User", "message": exc.message}
                self._send(exc.status, body, {"x-amzn-ErrorType": exc.code})
                return
            except Exception as exc:  # what Lambda reports for an error the function raised
                error = {
                    "errorType": getattr(exc, "error_type", type(exc).__name__),
                    "errorMessage": getattr(exc, "public_message", str(exc)),
                }
                headers["X-Amz-Function-Error"] = "Unhandled"
                answer = error
            self._send(200, answer, headers)

        def _send(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return InvokeApi


def _context(name: str, timeout_ms: int) -> LocalContext:
    """The context of an invoke by name or by (qualified) ARN: the invoked ARN is the one the caller used."""
    if not name.startswith("arn:"):
        return LocalContext(timeout_ms=timeout_ms, function_name=name)
    context = LocalContext(timeout_ms=timeout_ms, function_name=name.split(":")[6])
    context.invoked_function_arn = name
    return context
