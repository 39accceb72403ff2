"""The S3 model source against a real S3-compatible server (moto) over HTTP, with the real AWS SDK."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from reranker.config import Settings
from reranker.errors import (
    ModelAccessDenied,
    ModelCacheNoSpace,
    ModelChecksumMismatch,
    ModelDownloadFailed,
    ModelObjectMissing,
    ModelUnavailable,
    UnsafeModelArchive,
)
from reranker.model_cache import MANIFEST_FILE
from reranker.model_store import locate_model
from reranker.observability import SERVICE_NAME
from reranker.s3_download import create_s3_client
from tests.fault_proxy import Fault, FaultProxy, cut_body, server_error, slow_down, stall_body, trickle_body

REPO = Path(__file__).resolve().parents[2]
FIXTURE_ZIP = REPO / ".fixtures" / "ms-marco-TinyBERT-L-2-v2.zip"

pytestmark = pytest.mark.xdist_group("s3")

Published = tuple[Settings, dict[str, bytes], int]
# Timing bounds allow for a loaded CI machine (client creation and thread wake-ups); each test's fault lasts
# far longer than its bound, so a store that waited the fault out would still fail it.
SCHEDULING_SLACK = 1.0


class ExplodingClient:
    """Stands in for boto3 when the test proves no S3 call happens."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 was called ({name}) although the cache should have been used")


def settings_for(tmp_path: Path, uri: str, sha256: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_layer_root": tmp_path / "no-layer",
        "model_s3_uri": uri,
        "model_sha256": sha256,
        "model_cache_dir": tmp_path / "cache",
        "model_s3_max_attempts": 2,
    }
    values.update(overrides)
    return Settings(**values)


def upload(admin_s3: Any, bucket: str, data: bytes, key: str = "models/tiny.zip") -> str:
    admin_s3.put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


def tree_digest(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def leftovers(cache: Path) -> list[str]:
    return sorted(child.name for child in cache.iterdir() if child.name != ".lock") if cache.exists() else []


@pytest.fixture
def published(aws_env: Any, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path) -> Published:
    """A good model archive in S3, and settings that point at it with an empty cache."""
    files = kit.model_files()
    data = kit.build_zip(files)
    uri = upload(admin_s3, bucket, data)
    return settings_for(tmp_path, uri, kit.sha256_hex(data)), files, len(data)


# --- happy paths ------------------------------------------------------------------------------------


def test_cold_cache_downloads_verifies_and_publishes(published: Published, aws_env: Any) -> None:
    settings, files, size = published

    location = locate_model(settings)

    assert location.source == "s3"
    assert location.archive_sha256 == settings.model_sha256
    assert location.bytes_downloaded == size
    assert location.directory.name == "ms-marco-TinyBERT-L-2-v2"
    for name, content in files.items():
        assert (location.directory / name.split("/", 1)[1]).read_bytes() == content
    assert (settings.model_cache_dir / str(settings.model_sha256) / MANIFEST_FILE).is_file()
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]
    assert aws_env.gets() == 1


def test_warm_reuse_makes_no_s3_call(published: Published, aws_env: Any) -> None:
    settings, _, _ = published
    first = locate_model(settings)
    requests_after_download = len(aws_env.requests)

    again = locate_model(settings, s3_client=ExplodingClient())
    lazily = locate_model(settings)  # SDK left to locate_model: still no request reaches the server

    assert first.source == "s3"
    assert again.source == lazily.source == "cache"
    assert again.directory == lazily.directory == first.directory
    assert again.bytes_downloaded == 0
    assert len(aws_env.requests) == requests_after_download


def test_real_fixture_model_through_s3(aws_env: Any, admin_s3: Any, bucket: str, tmp_path: Path) -> None:
    if not FIXTURE_ZIP.is_file():
        pytest.skip("fixture model not generated (./dev setup)")
    data = FIXTURE_ZIP.read_bytes()
    uri = upload(admin_s3, bucket, data, key="flashrank/ms-marco-TinyBERT-L-2-v2.zip")

    location = locate_model(settings_for(tmp_path, uri, hashlib.sha256(data).hexdigest()))

    assert location.bytes_downloaded == len(data)
    names = {path.name for path in location.directory.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= names
    assert any(name.endswith(".onnx") for name in names)


# --- failures, each its own error -------------------------------------------------------------------


def test_checksum_mismatch(aws_env: Any, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path) -> None:
    uri = upload(admin_s3, bucket, kit.build_zip(kit.model_files()))
    settings = settings_for(tmp_path, uri, "0" * 64)

    with pytest.raises(ModelChecksumMismatch, match="MODEL_SHA256") as caught:
        locate_model(settings)

    assert uri in caught.value.public_message
    assert leftovers(settings.model_cache_dir) == []


def test_truncated_object_is_a_checksum_mismatch(
    aws_env: Any, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path
) -> None:
    data = kit.build_zip(kit.model_files())
    uri = upload(admin_s3, bucket, data[: len(data) // 2])
    settings = settings_for(tmp_path, uri, kit.sha256_hex(data))

    with pytest.raises(ModelChecksumMismatch):
        locate_model(settings)
    assert leftovers(settings.model_cache_dir) == []


def test_missing_key_is_not_retried(aws_env: Any, bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/nothing/here.zip"

    with pytest.raises(ModelObjectMissing, match="does not exist") as caught:
        locate_model(settings_for(tmp_path, uri, "a" * 64, model_s3_max_attempts=5))

    assert uri in caught.value.public_message
    assert "object" in caught.value.public_message
    assert aws_env.gets() == 1


def test_missing_bucket(aws_env: Any, tmp_path: Path) -> None:
    uri = f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/model.zip"

    with pytest.raises(ModelObjectMissing, match="bucket"):
        locate_model(settings_for(tmp_path, uri, "a" * 64, model_s3_max_attempts=5))
    assert aws_env.gets() == 1


def test_access_denied_by_the_server(
    aws_env: Any,
    admin_s3: Any,
    bucket: str,
    kit: Any,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given an IAM user with no policy at all, and moto enforcing IAM (server mode: /moto-api/reset-auth)
    data = kit.build_zip(kit.model_files())
    uri = upload(admin_s3, bucket, data)
    iam = boto3.client(
        "iam", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    set_auth(moto_endpoint, "0")
    try:
        # When / Then: a real 403 from the server, mapped and not retried
        with pytest.raises(ModelAccessDenied, match="s3:GetObject") as caught:
            locate_model(settings_for(tmp_path, uri, kit.sha256_hex(data), model_s3_max_attempts=5))
    finally:
        set_auth(moto_endpoint, "inf")
    assert uri in caught.value.public_message
    assert key["SecretAccessKey"] not in caught.value.public_message
    assert key["AccessKeyId"] not in caught.value.public_message
    assert aws_env.gets() == 1


def set_auth(moto_endpoint: str, initial_no_auth_action_count: str) -> None:
    request = urllib.request.Request(
        f"{moto_endpoint}/moto-api/reset-auth",
        data=initial_no_auth_action_count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("extra", "symlinks", "match"),
    [
        ({"ms-marco-TinyBERT-L-2-v2/../../evil.txt": b"pwned"}, None, r"'\.\.'"),
        ({"/etc/evil.txt": b"pwned"}, None, "absolute"),
        ({}, {"ms-marco-TinyBERT-L-2-v2/vocab.txt": "/etc/passwd"}, "symbolic link"),
    ],
    ids=["zip-slip", "absolute-path", "symlink"],
)
def test_unsafe_archive_is_refused(
    aws_env: Any,
    admin_s3: Any,
    bucket: str,
    kit: Any,
    tmp_path: Path,
    extra: dict[str, bytes],
    symlinks: dict[str, str] | None,
    match: str,
) -> None:
    data = kit.build_zip({**kit.model_files(), **extra}, symlinks=symlinks)
    uri = upload(admin_s3, bucket, data)
    settings = settings_for(tmp_path, uri, kit.sha256_hex(data))

    with pytest.raises(UnsafeModelArchive, match=match) as caught:
        locate_model(settings)

    assert uri in caught.value.public_message
    assert leftovers(settings.model_cache_dir) == []
    assert not any(tmp_path.rglob("evil.txt"))


def test_zip_bomb_is_refused(aws_env: Any, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path) -> None:
    files = kit.model_files()
    files[f"{kit.folder}/flashrank-TinyBERT-L-2-v2.onnx"] = bytes(40 * 1024 * 1024)
    data = kit.build_zip(files)
    assert len(data) < 100 * 1024
    uri = upload(admin_s3, bucket, data)
    settings = settings_for(tmp_path, uri, kit.sha256_hex(data), model_archive_max_bytes=8 * 1024 * 1024)

    with pytest.raises(UnsafeModelArchive, match="MODEL_ARCHIVE_MAX_BYTES"):
        locate_model(settings)
    assert leftovers(settings.model_cache_dir) == []


# --- a damaged cache is detected and replaced --------------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["truncate-onnx", "flip-byte", "delete-file", "delete-manifest", "bad-json"]
)
def test_damaged_cache_is_replaced(published: Published, aws_env: Any, damage: str) -> None:
    settings, files, _ = published
    first = locate_model(settings)
    entry = settings.model_cache_dir / str(settings.model_sha256)
    onnx = first.directory / "flashrank-TinyBERT-L-2-v2.onnx"
    if damage == "truncate-onnx":
        onnx.write_bytes(onnx.read_bytes()[:100])
    elif damage == "flip-byte":
        content = bytearray(onnx.read_bytes())
        content[len(content) // 2] ^= 0xFF
        onnx.write_bytes(bytes(content))
    elif damage == "delete-file":
        (first.directory / "tokenizer.json").unlink()
    elif damage == "delete-manifest":
        (entry / MANIFEST_FILE).unlink()
    else:
        (entry / MANIFEST_FILE).write_text("{not json")

    again = locate_model(settings)

    assert again.source == "s3"
    assert again.directory == first.directory
    assert tree_digest(again.directory) == {
        name.split("/", 1)[1]: hashlib.sha256(content).hexdigest() for name, content in files.items()
    }
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]
    assert locate_model(settings, s3_client=ExplodingClient()).source == "cache"


def test_work_left_by_a_crashed_process_is_ignored_and_cleaned(published: Published, aws_env: Any) -> None:
    settings, _, _ = published
    crashed = settings.model_cache_dir / ".tmp-crashed"
    (crashed / "entry" / "model").mkdir(parents=True)
    (crashed / "archive.zip").write_bytes(b"half an archive")

    location = locate_model(settings)

    assert location.source == "s3"
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]


# --- no space ----------------------------------------------------------------------------------------


def test_no_space_precheck(published: Published, aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _, _ = published
    usage = shutil.disk_usage(Path.cwd())
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))

    with pytest.raises(ModelCacheNoSpace, match="ephemeral storage") as caught:
        locate_model(settings)

    assert settings.model_s3_uri in caught.value.public_message
    assert leftovers(settings.model_cache_dir) == []


_NO_SPACE_SCRIPT = """
import json, os, shutil, sys
from pathlib import Path
from reranker.config import Settings
from reranker.model_store import locate_model
cache, uri, sha, skip_precheck = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if skip_precheck:
    real = shutil.disk_usage
    shutil.disk_usage = lambda path: real(path)._replace(free=1 << 40)
settings = Settings(model_layer_root=Path("/nonexistent"), model_s3_uri=uri, model_sha256=sha,
                    model_cache_dir=cache)
try:
    locate_model(settings)
    outcome = {"error": None, "message": ""}
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc), "cause": repr(exc.__cause__)}
outcome["leftovers"] = sorted(name for name in os.listdir(cache) if name != ".lock")
print(json.dumps(outcome))
"""


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def run_on_small_tmpfs(tmp_path: Path, size: str, uri: str, sha: str, *, skip_precheck: bool) -> dict:
    """Run locate_model in a child whose cache root is a real tmpfs of ``size`` (a user+mount namespace)."""
    cache = tmp_path / "tiny-tmpfs"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}"}
    mount_then_run = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount_then_run, "sh", size]
    command += [str(cache), sys.executable, "-c", _NO_SPACE_SCRIPT, str(cache), uri, sha]
    command += ["1" if skip_precheck else "0"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_unshare = pytest.mark.skipif(not _unshare_works(), reason="no unprivileged user+mount namespaces")


@needs_unshare
@pytest.mark.parametrize(
    ("case", "skip_precheck"),
    [
        ("archive-larger-than-tmpfs", False),
        ("enospc-while-downloading", True),
        ("enospc-while-extracting", False),
    ],
)
def test_no_space_on_a_real_small_filesystem(
    aws_env: Any, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path, case: str, skip_precheck: bool
) -> None:
    files = kit.model_files()
    onnx_name = f"{kit.folder}/flashrank-TinyBERT-L-2-v2.onnx"
    if case == "enospc-while-extracting":
        files[onnx_name] = bytes(3 * 1024 * 1024)  # compresses to a few KB: passes the pre-check
    else:
        files[onnx_name] = random.Random(7).randbytes(1536 * 1024)  # incompressible, larger than the fs
    data = kit.build_zip(files)
    uri = upload(admin_s3, bucket, data)

    outcome = run_on_small_tmpfs(tmp_path, "1m", uri, kit.sha256_hex(data), skip_precheck=skip_precheck)

    assert outcome["error"] == "ModelCacheNoSpace", outcome
    assert uri in outcome["message"]
    assert outcome["leftovers"] == []
    if case != "archive-larger-than-tmpfs":
        assert "No space left" in outcome["cause"] or "28" in outcome["cause"]


# --- retries -----------------------------------------------------------------------------------------


def test_client_makes_one_request_per_call_with_the_given_timeouts(aws_env: Any, tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path, "s3://b/k.zip", "a" * 64, model_s3_max_attempts=4, model_s3_connect_timeout_seconds=3,
        model_s3_read_timeout_seconds=7,
    )  # fmt: skip

    default = create_s3_client(settings).meta.config
    capped = create_s3_client(settings, connect_timeout=0.5, read_timeout=1.5).meta.config

    # Every retry is the store's own (counted, and bounded by the budget); botocore makes one request per call.
    assert default.retries == {"mode": "standard", "total_max_attempts": 1}
    assert (default.connect_timeout, default.read_timeout) == (3, 7)
    assert (capped.connect_timeout, capped.read_timeout) == (0.5, 1.5)


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The store's log lines: they go through the one Powertools logger, named after the service."""
    return [record.getMessage() for record in caplog.records if record.name == SERVICE_NAME]


@pytest.mark.parametrize(
    "fault",
    [slow_down(), server_error(500), server_error(503, "ServiceUnavailable"), cut_body(), cut_body(0.0)],
    ids=["503-slowdown", "500-internal", "503-unavailable", "body-cut-mid-stream", "body-cut-at-start"],
)
def test_one_transient_fault_is_retried_inside_the_same_load(
    published: Published, aws_env: FaultProxy, caplog: pytest.LogCaptureFixture, fault: Fault
) -> None:
    # Given one GET that fails the way S3 or the network sometimes does
    settings, files, size = published
    aws_env.inject(fault)

    # When the model is located
    location = locate_model(settings)

    # Then a second GET fetched it, the log says so truthfully, and only the good copy was published
    assert location.source == "s3"
    assert location.bytes_downloaded == size
    assert aws_env.gets() == location.download_attempts == 2
    lines = retry_lines(caplog)
    assert any("attempt 1 of" in line and "retrying in" in line for line in lines), lines
    assert any("after 2 attempts" in line for line in lines), lines
    assert tree_digest(location.directory) == {
        name.split("/", 1)[1]: hashlib.sha256(content).hexdigest() for name, content in files.items()
    }
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]


def test_a_stalled_body_times_out_and_is_fetched_again(
    published: Published, aws_env: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a read timeout of 0.3 s and a body that stops halfway for 10 s
    settings, _, size = published
    settings = replace(settings, model_s3_read_timeout_seconds=0.3, model_load_budget_seconds=5.0)
    aws_env.inject(stall_body(10.0))

    started = time.monotonic()
    location = locate_model(settings)
    elapsed = time.monotonic() - started

    assert location.bytes_downloaded == size
    assert aws_env.gets() == location.download_attempts == 2
    assert any("ReadTimeoutError" in line for line in retry_lines(caplog))
    assert elapsed < 2.0 + SCHEDULING_SLACK  # one 0.3 s read timeout and one backoff, not the 10 s stall
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]


def test_every_kind_of_fault_in_a_row_then_success(published: Published, aws_env: FaultProxy) -> None:
    settings, _, size = published
    settings = replace(settings, model_s3_max_attempts=5, model_s3_read_timeout_seconds=0.3)
    for fault in (slow_down(), cut_body(), stall_body(10.0), server_error(502, "BadGateway")):
        aws_env.inject(fault)

    location = locate_model(settings)

    assert location.bytes_downloaded == size
    assert aws_env.gets() == location.download_attempts == 5


def test_faults_beyond_the_budget_fail_within_the_budget_with_the_true_count(
    published: Published, aws_env: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a 2 s budget, attempts to spare, and a body that stalls on every GET
    settings, _, _ = published
    settings = replace(
        settings, model_load_budget_seconds=2.0, model_s3_max_attempts=10, model_s3_read_timeout_seconds=0.4
    )
    aws_env.inject(stall_body(10.0), times=20)

    started = time.monotonic()
    with pytest.raises(ModelDownloadFailed) as caught:
        locate_model(settings)
    elapsed = time.monotonic() - started

    # Then it gives up inside the budget, and says how many GETs it really made
    gets = aws_env.gets()
    assert 1 <= gets < 10  # ~3 on a quiet machine; client creation also spends the budget on a loaded one
    assert elapsed <= settings.model_load_budget_seconds + SCHEDULING_SLACK
    message = caught.value.public_message
    assert f"{gets} attempt(s)" in message
    assert "MODEL_LOAD_BUDGET_SECONDS=2" in message
    assert "ReadTimeoutError" in message
    assert "botocore" not in message
    assert len([line for line in retry_lines(caplog) if "retrying in" in line]) == gets - 1
    assert leftovers(settings.model_cache_dir) == []


def test_a_download_slower_than_the_budget_is_stopped_at_the_budget(
    aws_env: FaultProxy, admin_s3: Any, bucket: str, kit: Any, tmp_path: Path
) -> None:
    # Given a 600 KB archive that arrives at 200 KB/s (3 s), and a budget of 1 s
    files = kit.model_files()
    files[f"{kit.folder}/flashrank-TinyBERT-L-2-v2.onnx"] = random.Random(3).randbytes(600_000)
    data = kit.build_zip(files)
    settings = settings_for(
        tmp_path, upload(admin_s3, bucket, data), kit.sha256_hex(data), model_load_budget_seconds=1.0
    )
    aws_env.inject(trickle_body(200_000), times=5)

    started = time.monotonic()
    with pytest.raises(
        ModelDownloadFailed, match="did not finish within MODEL_LOAD_BUDGET_SECONDS=1"
    ) as caught:
        locate_model(settings)
    elapsed = time.monotonic() - started

    # Then it stops within one 64 KiB chunk (0.33 s at this rate) of the budget, and nothing is cached
    assert elapsed <= 1.0 + SCHEDULING_SLACK
    assert "1 attempt(s)" in caught.value.public_message
    assert aws_env.gets() == 1
    assert leftovers(settings.model_cache_dir) == []


def test_persistent_throttling_stops_at_max_attempts(published: Published, aws_env: FaultProxy) -> None:
    settings, _, _ = published
    settings = replace(settings, model_s3_max_attempts=3)
    aws_env.inject(slow_down(), times=100)

    with pytest.raises(ModelDownloadFailed) as caught:
        locate_model(settings)

    assert aws_env.gets() == 3
    message = caught.value.public_message
    assert settings.model_s3_uri in message
    assert "3 attempt(s)" in message and "SlowDown 503" in message
    assert "MODEL_S3_MAX_ATTEMPTS=3" in message
    assert leftovers(settings.model_cache_dir) == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (server_error(403, "AccessDenied"), ModelAccessDenied),
        (server_error(404, "NoSuchKey"), ModelObjectMissing),
        (server_error(400, "InvalidRequest"), ModelDownloadFailed),
    ],
    ids=["403", "404", "400"],
)
def test_refusals_are_not_retried(
    published: Published, aws_env: FaultProxy, fault: Fault, error: type[Exception]
) -> None:
    settings, _, _ = published
    aws_env.inject(fault, times=5)

    with pytest.raises(error):
        locate_model(replace(settings, model_s3_max_attempts=5))

    assert aws_env.gets() == 1


# --- the log lines, whatever the service is called ---------------------------------------------------

_LOGGING_SCRIPT = """
from reranker.config import Settings
from reranker.model_store import locate_model
from reranker.observability import logger
logger.set_correlation_id("request-7")  # what inject_lambda_context does when a request retries the load
locate_model(Settings.from_env())
"""


def test_retry_lines_are_powertools_json_under_any_service_name(
    published: Published, aws_env: FaultProxy
) -> None:
    # Given a function whose POWERTOOLS_SERVICE_NAME is not "reranker", in a fresh process (the Logger is
    # made at import), and one throttled GET
    settings, _, _ = published
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "POWERTOOLS_"))}
    env.update(
        PYTHONPATH=f"{REPO / 'handler'}{os.pathsep}{REPO}",
        POWERTOOLS_SERVICE_NAME="something-else",
        MODEL_LAYER_ROOT=str(settings.model_layer_root),
        MODEL_S3_URI=str(settings.model_s3_uri),
        MODEL_SHA256=str(settings.model_sha256),
        MODEL_CACHE_DIR=str(settings.model_cache_dir),
        _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    aws_env.inject(slow_down())

    # When the model is located
    done = subprocess.run(
        [sys.executable, "-c", _LOGGING_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then every line is a Powertools JSON record on stdout, with the service, the correlation ids and the
    # retry fields, and nothing reached stderr
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    records = [json.loads(line) for line in done.stdout.splitlines()]
    retry, recovered = records
    for record in records:
        assert record["service"] == "something-else"
        assert record["level"] == "WARNING"
        assert record["correlation_id"] == "request-7"
        assert record["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
        assert {"timestamp", "location"} <= record.keys()
    assert retry["message"].startswith(f"model download attempt 1 of {settings.model_s3_uri} failed")
    assert (retry["attempt"], retry["fault"]) == (1, "SlowDown 503")
    assert "after 2 attempts" in recovered["message"]
    assert recovered["attempts"] == 2
    assert aws_env.gets() == 2


# --- the init, and the later retry -------------------------------------------------------------------


@pytest.fixture
def model_env(aws_env: FaultProxy, admin_s3: Any, bucket: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a function whose model (the real fixture) is only in S3."""
    if not FIXTURE_ZIP.is_file():
        pytest.fail("fixture model not generated (./dev setup)")
    data = FIXTURE_ZIP.read_bytes()
    uri = upload(admin_s3, bucket, data, key="flashrank/ms-marco-TinyBERT-L-2-v2.zip")
    return {
        **os.environ,
        "MODEL_LAYER_ROOT": str(tmp_path / "no-layer"),
        "MODEL_S3_URI": uri,
        "MODEL_SHA256": hashlib.sha256(data).hexdigest(),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "SCORE_CACHE_MB": "0",
    }


def test_init_survives_one_cut_body(model_env: dict[str, str], aws_env: FaultProxy) -> None:
    from reranker.runtime import Ready, load

    aws_env.inject(cut_body())

    runtime = load(model_env)

    assert isinstance(runtime, Ready)
    assert runtime.location.download_attempts == aws_env.gets() == 2


def test_a_failed_init_is_retried_by_a_request_after_model_load_retry_seconds(
    model_env: dict[str, str], aws_env: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reranker import runtime

    # Given an init that S3 kept failing, and a later retry only after an hour (on a clock the test moves)
    now = [1000.0]
    aws_env.inject(slow_down(), times=2)
    env = {**model_env, "MODEL_S3_MAX_ATTEMPTS": "2", "MODEL_LOAD_RETRY_SECONDS": "3600"}
    monkeypatch.setattr(runtime, "STATE", runtime.ModuleState())
    runtime.initialize(env, clock=lambda: now[0])
    failed = runtime.STATE.runtime
    assert isinstance(failed, runtime.Failed) and failed.retryable

    # When a request arrives before the hour is up, then it is refused without another GET
    now[0] += 3599
    with pytest.raises(ModelUnavailable):
        runtime.ready()
    assert aws_env.gets() == 2

    # When the hour is up (S3 has recovered), then the request loads the model and is served
    now[0] += 1
    assert runtime.ready().engine is not None
    assert isinstance(runtime.STATE.runtime, runtime.Ready)
    assert aws_env.gets() == 3


# --- two cold starts at once -------------------------------------------------------------------------


def test_two_processes_racing_on_one_cache(published: Published, aws_env: Any) -> None:
    settings, files, _ = published
    aws_env.delay_seconds = 0.5  # keep the first download in flight while the second process arrives
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    # The workers import only reranker (not this module) and meet at the barrier before locating.
    with context.Pool(2, initializer=barrier.wait) as pool:
        locations = pool.map(locate_model, [settings, settings], chunksize=1)

    expected = {name.split("/", 1)[1]: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    assert locations[0].directory == locations[1].directory
    assert sorted(location.source for location in locations) == ["cache", "s3"]
    assert tree_digest(locations[0].directory) == expected
    assert aws_env.gets() == 1
    assert leftovers(settings.model_cache_dir) == [settings.model_sha256]
