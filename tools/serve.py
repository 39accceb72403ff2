"""A local HTTP endpoint in front of lambda_handler: each request becomes an HTTP API (payload 2.0) event.

    python -m tools.serve [--port 8080] [--host 127.0.0.1] [--model-dir DIR] [--timeout-ms 29000]

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

from tools.invoke import HANDLER_DIR, LocalContext, local_environment

type Handler = Callable[[dict[str, Any], Any], Any]

# Lambda's synchronous invoke payload limit: bigger requests never reach the function.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_TIMEOUT_MS = 29_000  # the template's function timeout
_TEXT_TYPES = ("application/json", "text/", "+json", "application/x-www-form-urlencoded")


def http_api_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, $default stage and route) sends for one request."""
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
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": merged.get("host", "127.0.0.1"),
            "domainPrefix": "local",
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
    handler: Handler, *, host: str = "127.0.0.1", port: int = 0, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> ThreadingHTTPServer:
    """A server (not started) that turns each request into an event for ``handler``; port 0 picks a free one."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 = any free port)")
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

    server = make_server(lambda_handler, host=args.host, port=args.port, timeout_ms=args.timeout_ms)
    host, port = server.server_address[:2]
    print(
        f"[serve] init {time.perf_counter() - started:.2f} s; listening on http://{host}:{port} "
        "(POST /rerank, GET /health, POST /v1/rerank, POST /v2/rerank, GET /openapi.json); Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
