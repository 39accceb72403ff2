"""A local HTTP endpoint in front of lambda_handler: each request becomes a payload 2.0 event.

    python -m tools.serve [--port 8080] [--host 127.0.0.1] [--function-url] [--model-dir DIR] [--timeout-ms 29000]

By default the events are an HTTP API's ($default stage and route); with ``--function-url`` they are a Lambda
Function URL's (the same payload on a ``*.lambda-url.*`` domain), which also answers ``POST /``.
Then ``curl -s localhost:8080/rerank -H 'content-type: application/json' -d '{"query": ..., "passages": [...]}'``,
or point the Cohere SDK at it: ``cohere.ClientV2(base_url="http://127.0.0.1:8080", api_key="...")``.
Invocations run one at a time, like one Lambda execution environment.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tools.invoke import HANDLER_DIR, LocalContext, fixture_notice, local_environment

type Handler = Callable[[dict[str, Any], Any], Any]

# Lambda's synchronous invoke payload limit: bigger requests never reach the function.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_TIMEOUT_MS = 29_000  # the template's function timeout
_TEXT_TYPES = ("application/json", "text/", "+json", "application/x-www-form-urlencoded")
# A Function URL's id names its domain (<id>.lambda-url.<region>.on.aws), which is how the handler tells it apart.
FUNCTION_URL_ID = "local"
FUNCTION_URL_DOMAIN = f"{FUNCTION_URL_ID}.lambda-url.us-east-1.on.aws"
# What each caller can reach (the function's router answers anything else with a 404 or 405).
HTTP_API_ROUTES = (
    "POST /rerank (native, or TEI's {query, texts})",
    "POST /v1/rerank (Cohere v1)",
    "POST /v2/rerank (Cohere v2)",
    "GET /health",
    "GET /openapi.json",
)
FUNCTION_URL_ROUTES = ("POST / (native)", *HTTP_API_ROUTES)


def http_api_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    function_url: bool = False,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, $default stage and route) sends for one request, or with
    ``function_url`` the one a Lambda Function URL sends (the same payload 2.0, on a lambda-url domain)."""
    url = urlsplit(target)
    merged: dict[str, str] = {}
    for name, value in headers:  # API Gateway joins repeated headers with commas
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    content_type = merged.get("content-type", "").lower()
    is_text = not body or any(kind in content_type for kind in _TEXT_TYPES)
    if is_text:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
    now = datetime.now(UTC)
    if function_url:
        merged["host"] = FUNCTION_URL_DOMAIN
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": FUNCTION_URL_ID if function_url else "local",
            "domainName": merged.get("host", "127.0.0.1"),
            "domainPrefix": FUNCTION_URL_ID if function_url else "local",
            "http": {
                "method": method,
                "path": url.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if url.query:
        event["queryStringParameters"] = dict(parse_qsl(url.query, keep_blank_values=True))
    if body:
        event["body"] = text_body if is_text else base64.b64encode(body).decode("ascii")
    return event


def http_answer(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body from what the handler returned (payload 2.0 rules)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"Content-Type": "application/json"}, json.dumps(result).encode("utf-8")
    headers = {str(name): str(value) for name, value in (result.get("headers") or {}).items()}
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    return int(result["statusCode"]), headers, raw


def make_server(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    function_url: bool = False,
) -> ThreadingHTTPServer:
    """A server (not started) that turns each request into an event for ``handler``; port 0 picks a free one.

    ``function_url``: the events are a Function URL's rather than an HTTP API's."""
    invoke_lock = threading.Lock()  # one invocation at a time, like one execution environment

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Cohere SDK's httpx client expects
        server_version = "reranker-local"

        def setup(self) -> None:
            super().setup()
            # Headers and body are two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to each.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"[serve] {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

        def _invoke(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send(
                    413, {"Content-Type": "application/json"}, b'{"message":"Request Entity Too Large"}'
                )
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            event = http_api_event(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                function_url=function_url,
            )
            with invoke_lock:
                try:
                    result = handler(event, LocalContext(timeout_ms=timeout_ms))
                except Exception:  # noqa: BLE001 - what API Gateway does when the function fails
                    self._send(
                        500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
                    )
                    return
            status, headers, payload = http_answer(result)
            self._send(status, headers, payload)

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def __getattr__(self, name: str) -> Any:
            # Every method (QUERY, TRACE, ...) reaches the function, as with API Gateway's $default route: the
            # function's router answers 405, where http.server would answer an HTML 501.
            if name.startswith("do_"):
                return self._invoke
            raise AttributeError(name)

    server = ThreadingHTTPServer((host, port), RequestHandler)
    server.daemon_threads = True
    return server


def banner(server: ThreadingHTTPServer, init_seconds: float, *, function_url: bool) -> str:
    """What the server listens on, as which caller, and the routes that caller reaches."""
    host, port = server.server_address[:2]
    if isinstance(host, bytes):  # typed str | bytes; a TCP server's is str
        host = host.decode()
    caller = (
        f"a Function URL ({FUNCTION_URL_DOMAIN} events)" if function_url else "an HTTP API ($default stage)"
    )
    routes = FUNCTION_URL_ROUTES if function_url else HTTP_API_ROUTES
    lines = [
        f"[serve] init {init_seconds:.2f} s; listening on http://{host}:{port} as {caller}; Ctrl-C stops"
    ]
    lines += [f"[serve]   {route}" for route in routes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 = any free port)")
    parser.add_argument(
        "--function-url",
        action="store_true",
        help="send Function URL events (which also answer POST /) instead of an HTTP API's",
    )
    parser.add_argument(
        "--model-dir", type=Path, help="a FlashRank model directory (default: the fixture model)"
    )
    parser.add_argument(
        "--timeout-ms", type=int, default=DEFAULT_TIMEOUT_MS, help="each invocation's remaining time at start"
    )
    args = parser.parse_args(argv)
    os.environ.update(local_environment(args.model_dir))
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    started = time.perf_counter()
    from reranker.app import lambda_handler

    server = make_server(
        lambda_handler,
        host=args.host,
        port=args.port,
        timeout_ms=args.timeout_ms,
        function_url=args.function_url,
    )
    print(banner(server, time.perf_counter() - started, function_url=args.function_url), file=sys.stderr)
    notice = fixture_notice(os.environ.get("MODEL_DIR"), "./dev serve")
    if notice:
        print(notice, file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
