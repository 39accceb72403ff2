"""Model sources without a network: MODEL_DIR, the layer, the 'nothing configured' message, the cache logic."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody

from reranker.config import Settings, SettingsError
from reranker.errors import ModelDownloadFailed, ModelNotConfigured, ModelUnavailable, UnsafeModelArchive
from reranker.model_cache import ModelCache
from reranker.model_store import ARCHIVE_SHA256_FILE, ModelLocation, locate_model
from reranker.s3_download import S3ArchiveDownload

REPO = Path(__file__).resolve().parents[2]
NAME = "ms-marco-TinyBERT-L-2-v2"
SHA = "752eddf1c5ece3c5e6115e9ab52eb3b16436bbf9b3a091cbb62b5b8eadc47105"


class ExplodingClient:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 was used ({name})")


class FakeS3:
    """Just enough of an S3 client: get_object with a real botocore StreamingBody."""

    def __init__(self, data: bytes, on_get: Callable[[], None] | None = None) -> None:
        self.data = data
        self.on_get = on_get
        self.calls = 0

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls += 1
        if self.on_get is not None:
            self.on_get()
        return {"Body": StreamingBody(io.BytesIO(self.data), len(self.data)), "ContentLength": len(self.data)}


def model_folder(root: Path, name: str = NAME) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file_name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / file_name).write_text("{}")
    (folder / "model.onnx").write_bytes(b"onnx")
    return folder


def model_zip(name: str = NAME) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file_name in (
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ):
            zipped.writestr(f"{name}/{file_name}", b"{}")
        zipped.writestr(f"{name}/model.onnx", bytes(range(256)) * 512)
    return buffer.getvalue()


def s3_settings(tmp_path: Path, data: bytes, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_layer_root": tmp_path / "no-layer",
        "model_s3_uri": "s3://bucket/models/tiny.zip",
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "model_cache_dir": tmp_path / "cache",
    }
    values.update(overrides)
    return Settings(**values)


# --- MODEL_DIR ---------------------------------------------------------------------------------------


def test_model_dir_wins_over_layer_and_s3(tmp_path: Path) -> None:
    explicit = model_folder(tmp_path / "explicit")
    model_folder(tmp_path / "layer")
    settings = Settings(
        model_dir=explicit,
        model_layer_root=tmp_path / "layer",
        model_s3_uri="s3://bucket/key.zip",
        model_sha256=SHA,
    )

    location = locate_model(settings, s3_client=ExplodingClient())

    assert location == ModelLocation(explicit, "model_dir", None, location.seconds)
    assert location.bytes_downloaded == 0
    assert 0 <= location.seconds < 1


@pytest.mark.parametrize("kind", ["missing", "a-file"])
def test_model_dir_that_is_not_a_directory_is_named(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "models" / NAME
    if kind == "a-file":
        target.parent.mkdir()
        target.write_text("not a folder")
    model_folder(tmp_path / "layer")  # a usable layer must not hide the mistake

    with pytest.raises(ModelNotConfigured, match="MODEL_DIR") as caught:
        locate_model(Settings(model_dir=target, model_layer_root=tmp_path / "layer"))

    assert str(target) in caught.value.public_message
    assert "Traceback" not in caught.value.public_message


# --- the layer ---------------------------------------------------------------------------------------


def test_layer_is_used_and_its_archive_checksum_reported(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "opt-models")
    (folder / ARCHIVE_SHA256_FILE).write_text(SHA.upper() + "\n")

    location = locate_model(
        Settings(model_layer_root=tmp_path / "opt-models", model_s3_uri="s3://b/k.zip", model_sha256=SHA),
        s3_client=ExplodingClient(),
    )

    assert (location.directory, location.source, location.archive_sha256) == (folder, "layer", SHA)


@pytest.mark.parametrize("marker", [None, "", "not-a-checksum\n", "ab" * 40])
def test_layer_without_a_valid_checksum_marker_reports_none(tmp_path: Path, marker: str | None) -> None:
    folder = model_folder(tmp_path / "opt-models")
    if marker is not None:
        (folder / ARCHIVE_SHA256_FILE).write_text(marker)

    location = locate_model(Settings(model_layer_root=tmp_path / "opt-models"))

    assert location.source == "layer"
    assert location.archive_sha256 is None


def test_layer_uses_model_name(tmp_path: Path) -> None:
    model_folder(tmp_path / "opt-models", NAME)
    other = model_folder(tmp_path / "opt-models", "ms-marco-MiniLM-L-12-v2")

    location = locate_model(
        Settings(model_layer_root=tmp_path / "opt-models", model_name="ms-marco-MiniLM-L-12-v2")
    )

    assert location.directory == other


# --- nothing configured ------------------------------------------------------------------------------


def test_nothing_configured_says_what_was_looked_at_and_what_to_set(tmp_path: Path) -> None:
    settings = Settings.from_env({"MODEL_LAYER_ROOT": str(tmp_path / "opt-models")})

    with pytest.raises(ModelNotConfigured) as caught:
        locate_model(settings)

    message = caught.value.public_message
    for expected in ("MODEL_DIR", str(tmp_path / "opt-models" / NAME), "MODEL_S3_URI", "MODEL_SHA256"):
        assert expected in message
    assert isinstance(caught.value, ModelUnavailable)
    assert caught.value.error_type == "ModelNotConfigured"


def test_nothing_configured_lists_the_models_the_layer_does_have(tmp_path: Path) -> None:
    model_folder(tmp_path / "opt-models", "ms-marco-MiniLM-L-12-v2")

    with pytest.raises(ModelNotConfigured, match="the layer has: ms-marco-MiniLM-L-12-v2; set MODEL_NAME"):
        locate_model(Settings(model_layer_root=tmp_path / "opt-models"))


def test_s3_settings_are_read_and_checked_with_the_others() -> None:
    settings = Settings.from_env(
        {
            "MODEL_S3_URI": "s3://bucket/key.zip",
            "MODEL_SHA256": SHA,
            "MODEL_S3_MAX_ATTEMPTS": "5",
            "MODEL_S3_CONNECT_TIMEOUT_SECONDS": "1",
            "MODEL_S3_READ_TIMEOUT_SECONDS": "9",
        }
    )
    assert (settings.model_s3_max_attempts, settings.model_s3_connect_timeout_seconds) == (5, 1)
    assert settings.model_s3_read_timeout_seconds == 9

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"MODEL_S3_MAX_ATTEMPTS": "0", "MODEL_S3_READ_TIMEOUT_SECONDS": "soon"})
    assert "MODEL_S3_MAX_ATTEMPTS" in caught.value.public_message
    assert "MODEL_S3_READ_TIMEOUT_SECONDS" in caught.value.public_message


# --- cold start cost: layer mode must not import boto3 -------------------------------------------------


@pytest.mark.parametrize("source", ["layer", "model_dir"])
def test_local_sources_never_import_boto3(tmp_path: Path, source: str) -> None:
    folder = model_folder(tmp_path / "opt-models")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "AWS_"))}
    env["PYTHONPATH"] = f"{REPO / 'handler'}{os.pathsep}{REPO}"
    env["MODEL_LAYER_ROOT"] = str(tmp_path / "opt-models")
    env["MODEL_S3_URI"], env["MODEL_SHA256"] = "s3://bucket/key.zip", SHA  # configured, but not needed
    if source == "model_dir":
        env["MODEL_DIR"] = str(folder)
    script = (
        "import sys, json\n"
        "from reranker.config import Settings\n"
        "from reranker.model_store import locate_model\n"
        "location = locate_model(Settings.from_env())\n"
        "print(json.dumps([location.source, sorted(m for m in ('boto3', 'botocore') if m in sys.modules)]))\n"
    )

    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)

    assert json.loads(done.stdout) == [source, []]


# --- the cache, with a fake client -------------------------------------------------------------------


def test_fake_client_download_then_cache(tmp_path: Path) -> None:
    data = model_zip()
    settings = s3_settings(tmp_path, data)
    client = FakeS3(data)

    first = locate_model(settings, s3_client=client)
    second = locate_model(settings, s3_client=client)

    assert (first.source, second.source, client.calls) == ("s3", "cache", 1)
    assert first.bytes_downloaded == len(data)
    assert first.archive_sha256 == settings.model_sha256
    assert (
        first.directory
        == second.directory
        == tmp_path / "cache" / str(settings.model_sha256) / "model" / NAME
    )


def test_an_interrupted_download_leaves_nothing_behind(tmp_path: Path) -> None:
    data = model_zip()
    settings = s3_settings(tmp_path, data)

    class Interrupted(FakeS3):
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            response = super().get_object(Bucket, Key)
            body = response["Body"]

            def chunks(size: int) -> Iterator[bytes]:
                yield body.read(size)
                raise KeyboardInterrupt  # anything, even not an Exception, mid-stream

            response["Body"].iter_chunks = chunks
            return response

    with pytest.raises(KeyboardInterrupt):
        locate_model(settings, s3_client=Interrupted(data))

    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [".lock"]
    assert locate_model(settings, s3_client=FakeS3(data)).source == "s3"


_KILLED_SCRIPT = """
import io, sys, time
from pathlib import Path
from botocore.response import StreamingBody
from reranker.config import Settings
from reranker.model_store import locate_model
data = Path(sys.argv[1]).read_bytes()
class Body(StreamingBody):
    def iter_chunks(self, chunk_size=1024):
        yield data[:1000]
        print("downloading", flush=True)
        time.sleep(60)
class Client:
    def get_object(self, Bucket, Key):
        return {"Body": Body(io.BytesIO(data), len(data)), "ContentLength": len(data)}
settings = Settings(model_layer_root=Path("/nonexistent"), model_s3_uri="s3://bucket/models/tiny.zip",
                    model_sha256=sys.argv[2], model_cache_dir=Path(sys.argv[3]))
locate_model(settings, s3_client=Client())
"""


def test_a_process_killed_mid_download_does_not_poison_the_cache(tmp_path: Path) -> None:
    # Given a cold start killed (SIGKILL: no finally, no cleanup) while it holds the lock mid-download
    data = model_zip()
    settings = s3_settings(tmp_path, data)
    archive = tmp_path / "archive.zip"
    archive.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}"}
    command = [sys.executable, "-c", _KILLED_SCRIPT, str(archive), str(settings.model_sha256)]
    with subprocess.Popen(
        [*command, str(settings.model_cache_dir)], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "downloading"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert any(path.name.startswith(".tmp-") for path in settings.model_cache_dir.iterdir())

    # When the next cold start comes
    location = locate_model(settings, s3_client=FakeS3(data))

    # Then the lock was released by the kernel, the half download was not used and is gone
    assert location.source == "s3"
    assert sorted(path.name for path in settings.model_cache_dir.iterdir()) == [
        ".lock",
        settings.model_sha256,
    ]


def test_losing_the_publish_race_is_not_an_error(tmp_path: Path) -> None:
    # Given another process that publishes the entry while ours is downloading (e.g. no working flock)
    data = model_zip()
    settings = s3_settings(tmp_path, data)
    other = FakeS3(data)
    ours = FakeS3(
        data,
        on_get=lambda: ModelCache(
            settings, S3ArchiveDownload(settings, s3_client=other)
        ).download_and_publish(),
    )

    # When our rename finds the entry already there, Then we use theirs after verifying it
    location = locate_model(settings, s3_client=ours)

    assert (ours.calls, other.calls) == (1, 1)
    assert location.source == "s3"
    assert location.directory == tmp_path / "cache" / str(settings.model_sha256) / "model" / NAME
    assert locate_model(settings, s3_client=ExplodingClient()).source == "cache"
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [".lock", settings.model_sha256]


def test_an_object_larger_than_the_archive_limit_is_not_downloaded(tmp_path: Path) -> None:
    data = model_zip()
    settings = s3_settings(tmp_path, data, model_archive_max_bytes=len(data) - 1)

    with pytest.raises(UnsafeModelArchive, match="MODEL_ARCHIVE_MAX_BYTES"):
        locate_model(settings, s3_client=FakeS3(data))
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [".lock"]


def test_a_manifest_pointing_outside_its_entry_is_not_trusted(tmp_path: Path) -> None:
    data = model_zip()
    settings = s3_settings(tmp_path, data)
    first = locate_model(settings, s3_client=FakeS3(data))
    manifest_path = tmp_path / "cache" / str(settings.model_sha256) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_folder"] = "../../elsewhere"
    manifest_path.write_text(json.dumps(manifest))

    again = locate_model(settings, s3_client=FakeS3(data))

    assert (again.source, again.directory) == ("s3", first.directory)


def test_an_unwritable_cache_dir_is_named(tmp_path: Path) -> None:
    data = model_zip()
    (tmp_path / "a-file").write_text("")
    settings = s3_settings(tmp_path, data, model_cache_dir=tmp_path / "a-file" / "cache")

    with pytest.raises(ModelDownloadFailed, match="MODEL_CACHE_DIR") as caught:
        locate_model(settings, s3_client=ExplodingClient())
    assert "s3://bucket/models/tiny.zip" in caught.value.public_message
