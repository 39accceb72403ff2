"""A real S3-compatible server (moto, server mode) behind a counting, fault-injecting proxy on loopback."""

from __future__ import annotations

import hashlib
import http.client
import io
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.loopback import serving

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
MODEL_FOLDER = "ms-marco-TinyBERT-L-2-v2"
# Hop-by-hop or recomputed headers the proxy must not copy through.
_SKIPPED_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class CountingProxy:
    """Forwards every request to moto; counts them and can answer with a fault instead."""

    upstream: tuple[str, int]
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    delay_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.fail_next = 0
            self.fail_status = 503
            self.delay_seconds = 0.0

    def gets(self, key: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for method, path in self.requests if method == "GET" and (key is None or key in path)
            )

    def _take_fault(self) -> int | None:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status
            return None


def _proxy_handler(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real S3; botocore reuses connections

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _forward(self) -> None:
            with proxy.lock:
                proxy.requests.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = proxy._take_fault()
            if fault is not None:
                code = "SlowDown" if fault == 503 else "InternalError"
                payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self.send_response(fault)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if proxy.delay_seconds:
                time.sleep(proxy.delay_seconds)
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIPPED_HEADERS}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _SKIPPED_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client hung up early on purpose (e.g. no space)
            finally:
                upstream.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    return Handler


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server per xdist worker process, on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def _session_proxy(moto_endpoint: str) -> Iterator[CountingProxy]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(upstream=(host, int(port)))
    with serving(_proxy_handler(proxy)) as address:
        proxy.url = f"http://{address}"
        yield proxy


@pytest.fixture
def proxy(_session_proxy: CountingProxy) -> Iterator[CountingProxy]:
    _session_proxy.reset()
    yield _session_proxy
    _session_proxy.reset()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy: CountingProxy) -> CountingProxy:
    """Dummy credentials; the store's own S3 client (as in Lambda) reaches moto through the counting proxy."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    return proxy


@pytest.fixture
def admin_s3(moto_endpoint: str) -> Any:
    """Talks to moto directly (not counted) to set up buckets and objects."""
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def bucket(admin_s3: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:16]}"
    admin_s3.create_bucket(Bucket=name)
    return name


class ArchiveKit:
    """Builds FlashRank-layout zips in the tests (the store never parses the files)."""

    folder = MODEL_FOLDER

    @staticmethod
    def model_files(folder: str = MODEL_FOLDER, onnx_bytes: int = 64 * 1024) -> dict[str, bytes]:
        onnx = hashlib.sha256(folder.encode()).digest() * (onnx_bytes // 32)
        return {
            f"{folder}/config.json": b'{"model_type": "bert"}',
            f"{folder}/tokenizer.json": b'{"version": "1.0"}',
            f"{folder}/tokenizer_config.json": b'{"model_max_length": 512}',
            f"{folder}/special_tokens_map.json": b'{"cls_token": "[CLS]"}',
            f"{folder}/flashrank-TinyBERT-L-2-v2.onnx": onnx,
        }

    @staticmethod
    def build_zip(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
            for name, content in files.items():
                zipped.writestr(name, content)
            for name, target in (symlinks or {}).items():
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o120777 << 16) | 0x20
                zipped.writestr(info, target)
        return buffer.getvalue()

    @staticmethod
    def sha256_hex(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


@pytest.fixture
def kit() -> ArchiveKit:
    return ArchiveKit()
