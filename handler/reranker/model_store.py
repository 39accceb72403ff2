"""Find the model directory at init: MODEL_DIR, then the model layer, then S3 into a verified /tmp cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reranker.config import MODEL_DIR, MODEL_LAYER_ROOT, MODEL_NAME, MODEL_S3_URI, MODEL_SHA256, Settings
from reranker.errors import ModelNotConfigured

Source = Literal["model_dir", "layer", "s3", "cache"]

ARCHIVE_SHA256_FILE = ".archive-sha256"  # written by the layer build next to the model files


@dataclass(frozen=True)
class ModelLocation:
    directory: Path  # the FlashRank model directory to hand to the engine
    source: Source  # "cache": the S3 source, satisfied by the /tmp cache without an S3 call
    archive_sha256: str | None
    seconds: float  # time spent locating / fetching
    bytes_downloaded: int = 0
    download_attempts: int = 0  # GET requests made for the archive (0: no download)


def locate_model(settings: Settings, *, s3_client: Any | None = None) -> ModelLocation:
    """Return the model directory from the first configured source; raise a ModelUnavailable otherwise.

    ``s3_client`` is for tests; without it botocore is imported only when the S3 source is used.
    """
    started = time.perf_counter()
    if settings.model_dir is not None:
        if not settings.model_dir.is_dir():
            raise ModelNotConfigured(
                f"{MODEL_DIR}={settings.model_dir} is not a directory; point it at a FlashRank model "
                "folder (config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json, the "
                f".onnx file) or unset it to use the model layer or {MODEL_S3_URI}"
            )
        return _found(settings.model_dir, "model_dir", started)
    layer_dir = settings.model_layer_root / settings.model_name
    if layer_dir.is_dir():
        return _found(layer_dir, "layer", started)
    if settings.model_s3_uri is not None:
        if settings.model_sha256 is None:
            raise ModelNotConfigured(f"{MODEL_SHA256} is required with {MODEL_S3_URI}")
        # Imported here: the S3 source costs botocore and Powertools imports that the local sources never need.
        from reranker.model_cache import ModelCache
        from reranker.s3_download import S3ArchiveDownload

        download = S3ArchiveDownload(settings, s3_client=s3_client)
        fetched = ModelCache(settings, download).fetch()
        return ModelLocation(
            directory=fetched.directory,
            source=fetched.source,
            archive_sha256=settings.model_sha256.lower(),
            seconds=time.perf_counter() - started,
            bytes_downloaded=fetched.bytes_downloaded,
            download_attempts=fetched.attempts,
        )
    raise ModelNotConfigured(_nothing_configured_message(settings, layer_dir))


def _found(directory: Path, source: Source, started: float) -> ModelLocation:
    return ModelLocation(
        directory=directory,
        source=source,
        archive_sha256=_read_archive_sha256(directory),
        seconds=time.perf_counter() - started,
    )


def _read_archive_sha256(directory: Path) -> str | None:
    try:
        value = (directory / ARCHIVE_SHA256_FILE).read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return None
    # Metadata only: a malformed marker is not worth failing init over.
    if len(value) == 64 and all(char in "0123456789abcdef" for char in value):
        return value
    return None


def _nothing_configured_message(settings: Settings, layer_dir: Path) -> str:
    layer_note = f"the model layer folder {layer_dir} ({MODEL_LAYER_ROOT}/{MODEL_NAME}) does not exist"
    try:
        present = sorted(child.name for child in settings.model_layer_root.iterdir() if child.is_dir())
    except OSError:
        present = []
    if present:
        layer_note += f" (the layer has: {', '.join(present)}; set {MODEL_NAME} to one of them)"
    return (
        f"no model found: {MODEL_DIR} is not set, {layer_note}, and {MODEL_S3_URI} is not set. "
        f"Set {MODEL_DIR} to a FlashRank model folder, attach the model layer, or set {MODEL_S3_URI} "
        f"(s3://bucket/key.zip) together with {MODEL_SHA256}"
    )
