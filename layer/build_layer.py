"""Build the model layer tree: a pinned, verified FlashRank archive unpacked to <out>/models/<name>/.

Refuses, before extracting, a model that would not fit beside the function in Lambda's unzipped limit.
Standard library only and self-contained: `sam build` runs the Makefile with whatever python3 is first on
PATH, in a scratch copy of layer/, and its --cached mode hashes only layer/ (see layer/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
DOWNLOAD_URL = "https://huggingface.co/prithivida/flashrank/resolve/main/{name}.zip"
SHA256_FILE = ".archive-sha256"
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MAX_FILES = 64
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
DOWNLOAD_TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1024 * 1024
# Lambda's limit on the unzipped size of a function and all its layers together.
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
# The function package's share of that limit. CI fails when the built package grows past it
# (tests/artifact, tools/check_stack.sh), so a layer up to the rest always fits beside it.
FUNCTION_PACKAGE_BUDGET_BYTES = 130_000_000
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class PinnedArchive:
    sha256: str
    size: int
    url: str = ""  # empty: FlashRank's Hugging Face URL for the model name (DOWNLOAD_URL)


def _flashrank(name: str, size: int, sha256: str) -> tuple[str, PinnedArchive]:
    return name, PinnedArchive(sha256=sha256, size=size, url=DOWNLOAD_URL.format(name=name))


# FlashRank's published pairwise archives we accept for download; anything else is refused. Sizes and
# hashes come from the Git LFS pointers of the model repository; the build verifies both.
PINNED_ARCHIVES = dict(
    [
        _flashrank(  # Nano
            "ms-marco-TinyBERT-L-2-v2",
            3_421_983,
            "752eddf1c5ece3c5e6115e9ab52eb3b16436bbf9b3a091cbb62b5b8eadc47105",
        ),
        _flashrank(  # Small
            "ms-marco-MiniLM-L-12-v2",
            22_696_961,
            "bdd3772b651ffc34f70e414049285bb55ccc6d1b8e29d0640f836d44f70ec77a",
        ),
        _flashrank(
            "ce-esci-MiniLM-L12-v2",
            22_820_403,
            "da1bbfbc8fba6d8dfe336acca6792aaa2a9e2a5cbc25fd268ce4cf5d164e2866",
        ),
        _flashrank(  # Medium
            "rank-T5-flan",
            77_246_772,
            "71d841f94f4ccaab463b944c315f3aa91bcdc7e8b01e3131d963f635fc579f67",
        ),
        _flashrank(  # Large
            "ms-marco-MultiBERT-L-12",
            103_473_926,
            "2c8ae5542f1538e355e9f295d349fc030b5cf7d398c8728c362f0e5129776971",
        ),
    ]
)


class LayerBuildError(Exception):
    """The layer cannot be built; the message says why and is printed without a traceback."""


@dataclass(frozen=True)
class ArchiveSource:
    """Where the archive comes from and what it must hash to."""

    model_name: str
    sha256: str
    size: int | None
    local_path: Path | None
    url: str | None


def resolve_source(environ: Mapping[str, str], base_dir: Path) -> ArchiveSource:
    """Pick the archive from MODEL_NAME, MODEL_ARCHIVE and MODEL_ARCHIVE_SHA256; refuse anything unpinned."""
    model_name = environ.get("MODEL_NAME", "").strip() or DEFAULT_MODEL_NAME
    if not _SAFE_NAME.match(model_name):
        raise LayerBuildError(f"MODEL_NAME {model_name!r} is not a plain directory name")
    archive = environ.get("MODEL_ARCHIVE", "").strip()
    expected = environ.get("MODEL_ARCHIVE_SHA256", "").strip().lower()
    if archive:
        if not _SHA256.match(expected):
            raise LayerBuildError("MODEL_ARCHIVE needs MODEL_ARCHIVE_SHA256 (64 hexadecimal characters)")
        path = Path(archive)
        if not path.is_absolute():
            path = base_dir / path
        return ArchiveSource(model_name, expected, None, path.resolve(), None)
    if expected:
        raise LayerBuildError("MODEL_ARCHIVE_SHA256 is only used with MODEL_ARCHIVE")
    pinned = PINNED_ARCHIVES.get(model_name)
    if pinned is None:
        known = ", ".join(sorted(PINNED_ARCHIVES))
        raise LayerBuildError(
            f"unknown model {model_name!r}: pinned models are {known} "
            "(or pass MODEL_ARCHIVE and MODEL_ARCHIVE_SHA256)"
        )
    url = environ.get("MODEL_DOWNLOAD_URL", "").strip() or pinned.url or DOWNLOAD_URL.format(name=model_name)
    return ArchiveSource(model_name, pinned.sha256, pinned.size, None, url)


def function_share(environ: Mapping[str, str], base_dir: Path) -> tuple[int, str]:
    """Bytes the function takes of Lambda's limit, and where that figure comes from.

    FUNCTION_PACKAGE_DIR (a built function, e.g. .aws-sam/build/RerankFunction) is measured; without it
    the function package's budget is assumed.
    """
    location = environ.get("FUNCTION_PACKAGE_DIR", "").strip()
    if not location:
        return FUNCTION_PACKAGE_BUDGET_BYTES, "the function package's budget (FUNCTION_PACKAGE_BUDGET_BYTES)"
    path = Path(location)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_dir():
        raise LayerBuildError(f"FUNCTION_PACKAGE_DIR {location} is not a directory")
    size = sum(
        entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink()
    )
    return size, f"the built function in {location}"


def unzipped_size(archive: Path) -> int:
    """The archive's unpacked size from its central directory, read before anything is extracted."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            return sum(info.file_size for info in bundle.infolist() if not info.is_dir())
    except zipfile.BadZipFile as exc:
        raise LayerBuildError(f"model archive {archive.name} is not a zip file") from exc


def check_fits(model_name: str, layer_bytes: int, function_bytes: int, function_source: str) -> None:
    """Refuse a layer that would push function + layer past Lambda's unzipped limit, naming the way out."""
    total = layer_bytes + function_bytes
    if total <= LAMBDA_UNZIPPED_LIMIT_BYTES:
        return
    raise LayerBuildError(
        f"{model_name} does not fit in a layer: it unpacks to {layer_bytes:,} bytes and "
        f"{function_source} is {function_bytes:,} bytes, {total:,} bytes together, over Lambda's limit of "
        f"{LAMBDA_UNZIPPED_LIMIT_BYTES:,} bytes unzipped for a function and its layers "
        f"(the layer may take at most {max(0, LAMBDA_UNZIPPED_LIMIT_BYTES - function_bytes):,} bytes). "
        "Serve it from S3 instead: upload the archive and deploy with "
        "ModelS3Uri=s3://<bucket>/<key>.zip ModelSha256=<its sha256> (and EphemeralStorageMB of at least "
        "1024; see docs/deploy.md, Switching the model)"
    )


def download(url: str, destination: Path, max_bytes: int) -> None:
    """Stream url to destination, stopping as soon as it grows past max_bytes."""
    parts = urllib.parse.urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme in ("https", "file") or loopback):
        raise LayerBuildError(
            f"refusing to download from {url!r}: https (or file:// / loopback for tests) only"
        )
    written = 0
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,  # noqa: S310
            destination.open("wb") as sink,
        ):
            while chunk := response.read(CHUNK_BYTES):
                written += len(chunk)
                if written > max_bytes:
                    raise LayerBuildError(f"download of {url} exceeds the pinned size {max_bytes}")
                sink.write(chunk)
    except OSError as exc:  # URLError and HTTPError are OSErrors
        raise LayerBuildError(f"download of {url} failed: {exc}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, sha256: str, size: int | None) -> None:
    """Check size (when pinned) and sha256 before anything reads the zip."""
    if not path.is_file():
        raise LayerBuildError(f"model archive {path} does not exist")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise LayerBuildError(f"model archive size mismatch: expected {size} bytes, got {actual_size}")
    actual = sha256_of(path)
    if actual != sha256:
        raise LayerBuildError(f"model archive sha256 mismatch: expected {sha256}, got {actual}")


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename
    path = PurePosixPath(name)
    if not name or "\\" in name or "\x00" in name or path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise LayerBuildError(f"unsafe archive member {name!r}: absolute or malformed path")
    if any(part in ("..", ".") for part in path.parts):
        raise LayerBuildError(f"unsafe archive member {name!r}: '..' or '.' in path")
    file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip was not written on Unix
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise LayerBuildError(f"unsafe archive member {name!r}: symlink or special file")
    return path


def extract_model(
    archive: Path,
    model_name: str,
    destination: Path,
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_UNPACKED_BYTES,
) -> list[str]:
    """Extract the <model_name>/ folder of a verified archive into destination; return the file names."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise LayerBuildError(f"model archive {archive.name} is not a zip file") from exc
    with bundle:
        members = bundle.infolist()
        files = [info for info in members if not info.is_dir()]
        if len(files) > max_files:
            raise LayerBuildError(f"model archive has {len(files)} files, more than {max_files}")
        declared = sum(info.file_size for info in files)
        if declared > max_bytes:
            raise LayerBuildError(f"model archive unpacks to {declared} bytes, more than {max_bytes} bytes")
        extracted: list[str] = []
        written = 0
        for info in members:
            path = _member_path(info)
            if info.is_dir():
                continue
            if path.parts[0] != model_name or len(path.parts) != 2:
                raise LayerBuildError(
                    f"unexpected archive member {info.filename!r}: files must sit directly in {model_name}/"
                )
            target = destination / path.parts[1]
            with bundle.open(info) as source, target.open("xb") as sink:
                while chunk := source.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > max_bytes:  # declared sizes are not trusted on their own
                        raise LayerBuildError(f"model archive unpacks to more than {max_bytes} bytes")
                    sink.write(chunk)
            extracted.append(path.parts[1])
    missing = [name for name in REQUIRED_FILES if name not in extracted]
    if not any(name.endswith(".onnx") for name in extracted):
        missing.append("*.onnx")
    if missing:
        raise LayerBuildError(f"model archive lacks {model_name}/{', '.join(missing)}")
    return sorted(extracted)


def build(
    source: ArchiveSource,
    artifacts_dir: Path,
    *,
    function_bytes: int = FUNCTION_PACKAGE_BUDGET_BYTES,
    function_source: str = "the function package's budget",
) -> Path:
    """Fetch (or take) the archive, verify it, check it fits beside the function, and lay out
    <artifacts_dir>/models/<name>/ atomically."""
    models_root = artifacts_dir / "models"
    models_root.mkdir(parents=True, exist_ok=True)
    final = models_root / source.model_name
    with tempfile.TemporaryDirectory(prefix=".build-", dir=models_root) as scratch:
        scratch_dir = Path(scratch)
        if source.local_path is not None:
            archive = source.local_path
        else:
            if source.url is None or source.size is None:
                raise LayerBuildError("a download needs a pinned URL and size")
            archive = scratch_dir / "archive.zip"
            download(source.url, archive, source.size)
        verify(archive, source.sha256, source.size)
        layer_bytes = unzipped_size(archive) + len(source.sha256) + 1  # + the .archive-sha256 line
        check_fits(source.model_name, layer_bytes, function_bytes, function_source)
        staged = scratch_dir / source.model_name
        staged.mkdir()
        files = extract_model(archive, source.model_name, staged)
        (staged / SHA256_FILE).write_text(source.sha256 + "\n", encoding="ascii")
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    print(f"model layer: {source.model_name} ({len(files)} files, sha256 {source.sha256[:12]}) -> {final}")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the layer root ($(ARTIFACTS_DIR))")
    parser.add_argument(
        "--base-dir",
        type=Path,
        default=Path.cwd(),
        help="directory a relative MODEL_ARCHIVE is resolved against (the project root)",
    )
    args = parser.parse_args(argv)
    try:
        source = resolve_source(os.environ, args.base_dir)
        function_bytes, function_source = function_share(os.environ, args.base_dir)
        build(source, args.out, function_bytes=function_bytes, function_source=function_source)
    except LayerBuildError as exc:
        print(f"model layer build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
