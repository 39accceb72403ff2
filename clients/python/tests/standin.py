"""A local stand-in for the two AWS front doors of the function, on 127.0.0.1 (a free port).

Every request must carry a valid SigV4 signature (verified, else 403 as AWS answers). Then:
- ``POST /2015-03-31/functions/{name}/invocations`` (service ``lambda``) is the Lambda Invoke API: the body is the
  event; a raised error comes back as ``X-Amz-Function-Error: Unhandled`` with ``{"errorType", "errorMessage"}``.
- any other request is an HTTP API (payload 2.0) call, as API Gateway (signed for ``execute-api``) or a Function
  URL (signed for ``lambda``) sends it; the handler's proxy answer becomes the HTTP answer.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from sigv4 import SignatureRejected, SignedBy, verify

from tools.invoke import LocalContext
from tools.serve import http_answer, http_api_event

Handler = Callable[[dict[str, Any], Any], Any]
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/?]+)/invocations(\?.*)?$")
FUNCTION_URL_DOMAIN = "standin0123.lambda-url.us-east-1.on.aws"


@dataclass
class Received:
    """One request as the stand-in saw it (after the signature check)."""

    path: str
    signed_by: SignedBy | None
    body: bytes
    status: int = 0


@dataclass
class StandIn:
    """The running server; tests read ``received``, set ``throttle_next`` to answer 429 that many times and
    ``answer_delay`` to hold every answer back that many seconds."""

    url: str
    function_name: str
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    throttle_next: int = 0
    answer_delay: float = 0.0
    timeout_ms: int = 29_000

    def settle(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every request received so far has been answered, so none outlives its test."""
        deadline = time.monotonic() + timeout
        while any(received.status == 0 for received in self.received) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up (read timeout) is fine
            super().handle_error(request, client_address)


def start(handler: Handler, *, secrets: dict[str, str], function_name: str = "reranker") -> StandIn:
    lock = threading.Lock()  # one invocation at a time, like one execution environment
    state: dict[str, StandIn] = {}

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            stand_in = state["self"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            received = Received(self.path, None, body)
            stand_in.received.append(received)
            invoke = _INVOKE_PATH.match(self.path)
            try:
                received.signed_by = verify(
                    method=self.command, path=self.path, headers=headers, body=body, secrets=secrets
                )
            except SignatureRejected as rejected:
                self._error(received, 403, rejected.error_type, rejected.message)
                return
            if invoke and received.signed_by.service != "lambda":
                self._error(
                    received, 403, "InvalidSignatureException", "Credential should be scoped to 'lambda'"
                )
                return
            if not invoke and received.signed_by.service not in ("execute-api", "lambda"):
                self._error(
                    received, 403, "InvalidSignatureException", "wrong service in the credential scope"
                )
                return
            time.sleep(stand_in.answer_delay)
            if stand_in.throttle_next > 0:
                stand_in.throttle_next -= 1
                self._error(received, 429, "TooManyRequestsException", "Rate Exceeded.")
                return
            if invoke:
                self._invoke(received, unquote(invoke["name"]), body)
            else:
                self._http(received, headers, body)

        do_GET = do_PUT = do_DELETE = do_POST

        def _invoke(self, received: Received, name: str, body: bytes) -> None:
            stand_in = state["self"]
            if name.rsplit(":", maxsplit=1)[-1] != stand_in.function_name and not name.endswith(
                f":function:{stand_in.function_name}"
            ):
                self._error(received, 404, "ResourceNotFoundException", f"Function not found: {name}")
                return
            try:
                event = json.loads(body)
            except ValueError:
                self._error(
                    received, 400, "InvalidRequestContentException", "Could not parse request body into json"
                )
                return
            context = LocalContext(timeout_ms=stand_in.timeout_ms, function_name=stand_in.function_name)
            headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
            with lock:
                try:
                    result = handler(event, context)
                except Exception as exc:
                    error = {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": traceback.format_tb(exc.__traceback__),
                    }
                    headers["X-Amz-Function-Error"] = "Unhandled"
                    self._send(received, 200, headers, json.dumps(error).encode())
                    return
            self._send(received, 200, headers, json.dumps(result).encode())

        def _http(self, received: Received, headers: dict[str, str], body: bytes) -> None:
            stand_in = state["self"]
            event = http_api_event(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
            )
            if received.signed_by and received.signed_by.service == "lambda":
                event["requestContext"]["domainName"] = FUNCTION_URL_DOMAIN
            with lock:
                try:
                    result = handler(event, LocalContext(timeout_ms=stand_in.timeout_ms))
                except Exception:
                    self._error(received, 500, "InternalServerErrorException", "Internal Server Error")
                    return
            status, answer_headers, payload = http_answer(result)
            self._send(received, status, answer_headers, payload)

        def _error(self, received: Received, status: int, error_type: str, message: str) -> None:
            headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
            self._send(received, status, headers, json.dumps({"message": message}).encode())

        def _send(self, received: Received, status: int, headers: dict[str, str], payload: bytes) -> None:
            received.status = status
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = _Server(("127.0.0.1", 0), RequestHandler)
    host, port = server.server_address[:2]
    stand_in = StandIn(url=f"http://{host}:{port}", function_name=function_name, server=server)
    state["self"] = stand_in
    threading.Thread(target=server.serve_forever, name="aws-stand-in", daemon=True).start()
    return stand_in
