"""A real S3-compatible server (moto, server mode) behind a counting, fault-injecting proxy on loopback."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.fault_proxy import FaultProxy
from tests.loopback import serving

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
MODEL_FOLDER = "ms-marco-TinyBERT-L-2-v2"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server per xdist worker process, on a free loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def _session_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FaultProxy(upstream=(host, int(port)))
    with serving(proxy.handler()) as address:
        proxy.url = f"http://{address}"
        yield proxy


@pytest.fixture
def proxy(_session_proxy: FaultProxy) -> Iterator[FaultProxy]:
    _session_proxy.reset()
    yield _session_proxy
    _session_proxy.reset()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy: FaultProxy) -> FaultProxy:
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
