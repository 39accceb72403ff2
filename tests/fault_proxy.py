"""A threaded HTTP proxy on loopback in front of an S3-compatible server: counts requests, injects S3 faults.

The faults are the ones S3 and the network really produce, at the HTTP level, so the real botocore meets
them: an error status with S3's XML body (503 SlowDown), a body cut mid-stream (the connection closes
before Content-Length bytes arrived), and a body that stalls past the client's read timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

# Hop-by-hop or recomputed headers the proxy must not copy through.
_SKIPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
# Upper bound on any stall, so a forgotten stall never keeps a handler thread past the test session.
_MAX_STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Fault:
    """What the proxy does to one GET instead of forwarding it faithfully."""

    kind: Literal["status", "cut_body", "stall_body", "trickle_body"]
    status: int = 503
    code: str = "SlowDown"
    body_fraction: float = 0.5  # cut_body / stall_body: share of the body sent before the cut or stall
    stall_seconds: float = 0.0
    bytes_per_second: int = 0  # trickle_body


def slow_down() -> Fault:
    """S3's throttling answer: 503 with <Code>SlowDown</Code>."""
    return Fault("status", status=503, code="SlowDown")


def server_error(status: int = 500, code: str = "InternalError") -> Fault:
    return Fault("status", status=status, code=code)


def cut_body(fraction: float = 0.5) -> Fault:
    """Full headers (Content-Length of the whole object), part of the body, then the connection closes."""
    return Fault("cut_body", body_fraction=fraction)


def stall_body(seconds: float, fraction: float = 0.5) -> Fault:
    """Full headers and part of the body, then nothing for ``seconds``, then the connection closes."""
    return Fault("stall_body", body_fraction=fraction, stall_seconds=min(seconds, _MAX_STALL_SECONDS))


def trickle_body(bytes_per_second: int) -> Fault:
    """The whole body, slowly: 4 KiB at a time at ``bytes_per_second`` (a congested or throttled path)."""
    return Fault("trickle_body", body_fraction=0.0, bytes_per_second=bytes_per_second)


@dataclass
class FaultProxy:
    """Forwards every request to ``upstream``; GETs take the queued faults first, one fault per GET."""

    upstream: tuple[str, int]
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    delay_seconds: float = 0.0  # before forwarding each request (keeps a download in flight)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([fault] * times)

    def reset(self) -> None:
        self.released.set()  # end stalls still in progress
        with self.lock:
            self.requests.clear()
            self.faults.clear()
            self.delay_seconds = 0.0
        self.released = threading.Event()

    def gets(self, key: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for method, path in self.requests if method == "GET" and (key is None or key in path)
            )

    def pending_faults(self) -> int:
        with self.lock:
            return len(self.faults)

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            if method == "GET" and self.faults:
                return self.faults.popleft()
            return None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real S3; botocore reuses connections

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _forward(self) -> None:
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take_fault(self.command)
                if fault is not None and fault.kind == "status":
                    self._send_error_status(fault)
                    return
                if proxy.delay_seconds:
                    time.sleep(proxy.delay_seconds)
                status, headers, payload = self._ask_upstream(body)
                try:
                    self.send_response(status)
                    for key, value in headers:
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if fault is None or status != 200:
                        self.wfile.write(payload)
                        return
                    self.wfile.write(payload[: int(len(payload) * fault.body_fraction)])
                    if fault.kind == "trickle_body":
                        self._trickle(payload, fault.bytes_per_second)
                        return
                    if fault.kind == "stall_body":
                        proxy.released.wait(fault.stall_seconds)
                    self._hang_up()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client hung up early on purpose (e.g. no space)

            def _ask_upstream(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIPPED_HEADERS}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _SKIPPED_HEADERS]
                    return response.status, kept, payload
                finally:
                    upstream.close()

            def _trickle(self, payload: bytes, bytes_per_second: int) -> None:
                piece = 4096
                for start in range(0, len(payload), piece):
                    if proxy.released.wait(piece / bytes_per_second):
                        self._hang_up()
                        return
                    self.wfile.write(payload[start : start + piece])

            def _send_error_status(self, fault: Fault) -> None:
                payload = f"<Error><Code>{fault.code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _hang_up(self) -> None:
                # Close now, short of Content-Length: the client sees the connection end mid-body.
                self.close_connection = True
                with contextlib.suppress(OSError):  # the client may have left already (a stall timed out)
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler
