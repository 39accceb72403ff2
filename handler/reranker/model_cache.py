"""A verified, locked cache of one model archive under MODEL_CACHE_DIR, published by one atomic rename."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from reranker.archive import ExtractedArchive, extract_zip, sha256_file
from reranker.config import MODEL_CACHE_DIR, Settings
from reranker.errors import ModelCacheNoSpace, ModelDownloadFailed, ModelUnavailable
from reranker.observability import logger

MANIFEST_FILE = "manifest.json"  # written last inside a cache entry, before the entry is published
MANIFEST_FORMAT = 1
LOCK_FILE = ".lock"
_TEMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class ArchiveSource(Protocol):
    """Where a cache miss is filled from (the S3 download)."""

    uri: str  # named in messages and in the manifest
    sha256: str  # the archive's sha256, lower-case hex: the name of its cache entry

    def download(self, archive: Path, check_room: Callable[[int], None]) -> tuple[int, int]:
        """Write the verified archive to ``archive``; (bytes, attempts). OSError: writing it failed."""
        ...


@dataclass(frozen=True)
class Fetched:
    directory: Path
    source: Literal["s3", "cache"]  # "cache": found in the cache, without a download
    bytes_downloaded: int = 0
    attempts: int = 0


class ModelCache:
    """One archive cached under MODEL_CACHE_DIR/<sha256>/, published by one atomic directory rename.

    Layout: ``<root>/.lock`` (flock), ``<root>/<sha256>/manifest.json`` + ``<root>/<sha256>/<model folder>/``.
    Work in progress lives in ``<root>/.tmp-*`` and is never mistaken for an entry; an entry whose manifest
    is missing or whose files do not match it (size and sha256) is moved aside and fetched again.
    """

    def __init__(self, settings: Settings, source: ArchiveSource) -> None:
        self._settings = settings
        self._source = source
        self._uri = source.uri
        self._sha256 = source.sha256
        self._root = settings.model_cache_dir
        self._entry = self._root / self._sha256

    def fetch(self) -> Fetched:
        """The model directory from the cache, or from the source (then published to the cache)."""
        # Fast path without the lock: entries only ever appear complete (rename) and are verified here.
        directory = self._verified_entry(quiet=True)
        if directory is not None:
            return Fetched(directory, "cache")
        self._make_root()
        with self._locked():
            # Another process may have published the entry while we waited for the lock.
            directory = self._verified_entry(quiet=False)
            if directory is not None:
                return Fetched(directory, "cache")
            self._discard_leftovers()
            return self.download_and_publish()

    def download_and_publish(self) -> Fetched:
        """Download into a private work folder, extract, write the manifest, publish. Callers hold the lock."""
        try:
            work = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=self._root))
        except OSError as exc:
            raise self._write_error(exc) from exc
        try:
            archive = work / "archive.zip"
            downloaded, attempts = self._source.download(archive, self._check_room)
            staging = work / "entry"
            extracted = self._extract(archive, staging / "model")
            archive.unlink()
            write_manifest(staging, extracted, archive_sha256=self._sha256, source=self._uri)
            return Fetched(self._publish(staging, extracted), "s3", downloaded, attempts)
        except OSError as exc:
            raise self._write_error(exc) from exc
        finally:
            # A partial download (any failed attempt) lives only here and is never published.
            shutil.rmtree(work, ignore_errors=True)

    def check_entry(self) -> tuple[Path | None, str]:
        """(model folder, "") when the entry's files all match its manifest, else (None, why not)."""
        return check_manifest(self._entry, self._sha256)

    # --- the entry and the lock ----------------------------------------------------------------------

    def _verified_entry(self, *, quiet: bool) -> Path | None:
        if not self._entry.exists():
            return None
        model_folder, problem = self.check_entry()
        if model_folder is not None:
            return model_folder
        if not quiet:
            logger.warning(
                "model cache entry %s is unusable (%s); fetching %s again", self._entry, problem, self._uri
            )
        return None

    def _make_root(self) -> None:
        try:
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is released by the kernel if this process dies, so a crashed fetch never blocks the next one.
        try:
            descriptor = os.open(self._root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._write_error(exc) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _discard_leftovers(self) -> None:
        """Under the lock: remove an unusable entry and work left by crashed fetches."""
        if self._entry.exists():
            self._move_aside(self._entry)
        for child in self._root.iterdir():
            if child.name.startswith((_TEMP_PREFIX, _TRASH_PREFIX)):
                shutil.rmtree(child, ignore_errors=True)

    def _move_aside(self, path: Path) -> None:
        trash = self._root / f"{_TRASH_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        try:
            path.rename(trash)
        except OSError as exc:
            raise self._write_error(exc) from exc
        shutil.rmtree(trash, ignore_errors=True)

    # --- filling an entry ----------------------------------------------------------------------------

    def _check_room(self, object_bytes: int) -> None:
        # The archive and its extracted files sit side by side until the archive is deleted.
        needed = 2 * object_bytes
        free = shutil.disk_usage(self._root).free
        if free < needed:
            raise ModelCacheNoSpace(
                f"{self._uri} is {object_bytes} bytes and needs about {needed} bytes under "
                f"{MODEL_CACHE_DIR}={self._root}, but only {free} are free; raise the function's ephemeral "
                "storage or free space in /tmp"
            )

    def _extract(self, archive: Path, destination: Path) -> ExtractedArchive:
        return extract_zip(
            archive,
            destination,
            max_bytes=self._settings.model_archive_max_bytes,
            max_files=self._settings.model_archive_max_files,
            label=self._uri,
        )

    def _publish(self, staging: Path, extracted: ExtractedArchive) -> Path:
        try:
            staging.rename(self._entry)
        except OSError as exc:
            # Only a process that did not take the lock can get here first; its entry is as good as ours.
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or self.check_entry()[0] is None:
                raise
        return self._entry / "model" / extracted.top_folder

    def _write_error(self, exc: OSError) -> ModelUnavailable:
        if exc.errno in _NO_SPACE_ERRNOS:
            return ModelCacheNoSpace(
                f"ran out of space writing {self._uri} under {MODEL_CACHE_DIR}={self._root}; raise the "
                "function's ephemeral storage or free space in /tmp"
            )
        return ModelDownloadFailed(
            f"could not write the model cache for {self._uri} under {MODEL_CACHE_DIR}={self._root} "
            f"({os.strerror(exc.errno) if exc.errno else type(exc).__name__}); point {MODEL_CACHE_DIR} at a "
            "writable directory"
        )


# --- the manifest ---------------------------------------------------------------------------------------


def write_manifest(staging: Path, extracted: ExtractedArchive, *, archive_sha256: str, source: str) -> None:
    """The entry's manifest, written last: every extracted file with its size and sha256."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "archive_sha256": archive_sha256,
        "source": source,
        "model_folder": f"model/{extracted.top_folder}",
        "files": [
            {"path": f"model/{member.path}", "size": member.size, "sha256": member.sha256}
            for member in extracted.members
        ],
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def check_manifest(entry: Path, archive_sha256: str) -> tuple[Path | None, str]:  # noqa: PLR0911 - one return per defect
    """(model folder, "") when every file of ``entry`` matches its manifest, else (None, why not)."""
    try:
        manifest = json.loads((entry / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no manifest"
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest ({exc})"
    try:
        if manifest["format"] != MANIFEST_FORMAT or manifest["archive_sha256"] != archive_sha256:
            return None, "manifest of another format or archive"
        files = [(str(item["path"]), int(item["size"]), str(item["sha256"])) for item in manifest["files"]]
        model_folder = entry / str(manifest["model_folder"])
    except (KeyError, TypeError, ValueError):
        return None, "malformed manifest"
    if not model_folder.resolve().is_relative_to(entry.resolve()) or not model_folder.is_dir():
        return None, "manifest names no model folder inside the entry"
    for relative, size, digest in files:
        path = entry / relative
        try:
            if path.is_symlink() or path.stat().st_size != size:
                return None, f"{relative} has the wrong size"
            # Full hash on purpose: ~1 ms per MB (bench/model_sources.py) on a path that runs once per
            # cold start, and it warms the page cache the engine reads next; a size check alone
            # misses a zeroed or flipped block.
            if sha256_file(path) != digest:
                return None, f"{relative} has the wrong sha256"
        except OSError:
            return None, f"{relative} is missing"
    return model_folder, ""
