"""Checksums and safe extraction of model zip archives (stdlib only; the layer build reuses it)."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reranker.errors import UnsafeModelArchive

CHUNK_BYTES = 1024 * 1024

_FILE_TYPE_MASK = 0o170000
_ALLOWED_FILE_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)  # 0: archives made on systems without Unix modes


@dataclass(frozen=True)
class ArchiveMember:
    """One extracted file, as written to disk (not as the zip headers claim)."""

    path: str  # relative to the extraction root, '/'-separated, starting with the top folder
    size: int
    sha256: str


@dataclass(frozen=True)
class ExtractedArchive:
    top_folder: str
    members: tuple[ArchiveMember, ...]

    @property
    def total_bytes(self) -> int:
        return sum(member.size for member in self.members)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large model never sits in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def extract_zip(
    archive: Path,
    destination: Path,
    *,
    max_bytes: int,
    max_files: int,
    expected_top_folder: str | None = None,
    label: str | None = None,
) -> ExtractedArchive:
    """Extract a FlashRank-style zip (one top folder) into ``destination``, refusing anything unsafe.

    ``destination`` must not exist yet or be empty. Limits apply to the sizes the headers declare and,
    because headers can lie, again to the bytes actually decompressed. ``label`` names the archive in
    error messages (an S3 URI, a URL); it defaults to the file name. On any error the caller owns cleanup
    of ``destination``.
    """
    name = label or archive.name
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = zipped.infolist()
            top_folder = _check_entries(entries, name, max_bytes, max_files, expected_top_folder)
            destination.mkdir(parents=True, exist_ok=True)
            root = destination.resolve()
            members: list[ArchiveMember] = []
            written = 0
            for entry in entries:
                relative = entry.filename.rstrip("/")
                target = root.joinpath(*PurePosixPath(relative).parts)
                if not target.resolve().is_relative_to(root):
                    raise UnsafeModelArchive(
                        f"model archive {name}: entry {entry.filename!r} leaves its folder"
                    )
                if entry.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                member = _extract_member(zipped, entry, target, name, max_bytes - written)
                written += member.size
                members.append(member)
    except zipfile.BadZipFile as exc:
        raise UnsafeModelArchive(f"model archive {name} is not a valid zip file ({exc})") from exc
    except (zlib.error, EOFError, NotImplementedError) as exc:
        raise UnsafeModelArchive(f"model archive {name} could not be decompressed ({exc})") from exc
    return ExtractedArchive(top_folder=top_folder, members=tuple(members))


def _checked_parts(entry: zipfile.ZipInfo, name: str) -> tuple[str, ...]:
    """The entry's path parts, once it is known to be a plain, unencrypted file or folder with a safe path."""
    parts = _safe_parts(entry.filename, name)
    file_type = (entry.external_attr >> 16) & _FILE_TYPE_MASK
    if file_type == stat.S_IFLNK:
        raise UnsafeModelArchive(f"model archive {name}: entry {entry.filename!r} is a symbolic link")
    if file_type not in _ALLOWED_FILE_TYPES:
        raise UnsafeModelArchive(f"model archive {name}: entry {entry.filename!r} is not a regular file")
    if entry.flag_bits & 0x1:
        raise UnsafeModelArchive(f"model archive {name}: entry {entry.filename!r} is encrypted")
    return parts


def _check_entries(
    entries: list[zipfile.ZipInfo],
    name: str,
    max_bytes: int,
    max_files: int,
    expected_top_folder: str | None,
) -> str:
    if not entries:
        raise UnsafeModelArchive(f"model archive {name} is empty")
    if len(entries) > max_files:
        raise UnsafeModelArchive(
            f"model archive {name} has {len(entries)} entries, more than the limit of {max_files} "
            "(MODEL_ARCHIVE_MAX_FILES)"
        )
    declared = sum(entry.file_size for entry in entries)
    if declared > max_bytes:
        raise UnsafeModelArchive(
            f"model archive {name} declares {declared} uncompressed bytes, more than the limit of "
            f"{max_bytes} (MODEL_ARCHIVE_MAX_BYTES)"
        )
    seen: set[str] = set()
    files: set[str] = set()
    parents: set[str] = set()
    top_folders: set[str] = set()
    for entry in entries:
        parts = _checked_parts(entry, name)
        key = "/".join(parts)
        if key in seen:
            raise UnsafeModelArchive(f"model archive {name}: entry {entry.filename!r} appears twice")
        seen.add(key)
        if not entry.is_dir():
            files.add(key)
        parents.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
        if len(parts) == 1 and not entry.is_dir():
            raise UnsafeModelArchive(
                f"model archive {name}: file {entry.filename!r} is not inside the model folder"
            )
        top_folders.add(parts[0])
    clashes = sorted(files & parents)
    if clashes:
        raise UnsafeModelArchive(f"model archive {name}: {clashes[0]!r} is both a file and a folder")
    if len(top_folders) != 1:
        raise UnsafeModelArchive(
            f"model archive {name} must hold exactly one top folder, found {sorted(top_folders)}"
        )
    top_folder = top_folders.pop()
    if expected_top_folder is not None and top_folder != expected_top_folder:
        raise UnsafeModelArchive(
            f"model archive {name} holds folder {top_folder!r}, expected {expected_top_folder!r}"
        )
    return top_folder


def _safe_parts(filename: str, name: str) -> tuple[str, ...]:
    if "\\" in filename or "\x00" in filename:
        raise UnsafeModelArchive(
            f"model archive {name}: entry {filename!r} has a backslash or NUL in its name"
        )
    if filename.startswith("/") or (len(filename) > 1 and filename[1] == ":"):
        raise UnsafeModelArchive(f"model archive {name}: entry {filename!r} is an absolute path")
    parts = tuple(filename.rstrip("/").split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeModelArchive(f"model archive {name}: entry {filename!r} has an empty, '.' or '..' part")
    return parts


def _extract_member(
    zipped: zipfile.ZipFile, entry: zipfile.ZipInfo, target: Path, name: str, budget: int
) -> ArchiveMember:
    digest = hashlib.sha256()
    size = 0
    # "xb": never follow or overwrite something already there; fixed 0o644 drops setuid/exec bits.
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with zipped.open(entry) as source, os.fdopen(descriptor, "wb") as sink:
        while chunk := source.read(CHUNK_BYTES):
            size += len(chunk)
            if size > entry.file_size or size > budget:
                raise UnsafeModelArchive(
                    f"model archive {name}: entry {entry.filename!r} decompresses to more bytes than "
                    "declared or than the limit (MODEL_ARCHIVE_MAX_BYTES); refusing a possible zip bomb"
                )
            digest.update(chunk)
            sink.write(chunk)
    return ArchiveMember(path=entry.filename, size=size, sha256=digest.hexdigest())
