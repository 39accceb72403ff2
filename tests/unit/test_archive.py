"""Safe zip extraction and streamed sha256 (reranker.archive): what a hostile archive cannot do."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reranker.archive import CHUNK_BYTES, extract_zip, sha256_file
from reranker.errors import UnsafeModelArchive

FOLDER = "ms-marco-TinyBERT-L-2-v2"
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_files": 16}


def model_files(folder: str = FOLDER) -> dict[str, bytes]:
    return {
        f"{folder}/config.json": b"{}",
        f"{folder}/tokenizer.json": b'{"model": {}}',
        f"{folder}/tokenizer_config.json": b"{}",
        f"{folder}/special_tokens_map.json": b"{}",
        f"{folder}/model.onnx": bytes(range(256)) * 40,
    }


def write_zip(path: Path, files: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((modes or {}).get(name, 0o100644) << 16) | (
                0x10 if name.endswith("/") else 0
            )
            zipped.writestr(info, content)
    return path


def test_sha256_file_streams_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK_BYTES // 128 + 3)  # a bit more than two chunks
    path = tmp_path / "blob"
    path.write_bytes(data)

    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_extracts_a_flashrank_archive_and_reports_what_it_wrote(tmp_path: Path) -> None:
    files = model_files()
    archive = write_zip(tmp_path / "model.zip", {f"{FOLDER}/": b"", **files})

    extracted = extract_zip(archive, tmp_path / "out", **LIMITS)

    assert extracted.top_folder == FOLDER
    assert {member.path for member in extracted.members} == set(files)
    for member in extracted.members:
        written = tmp_path / "out" / member.path
        assert written.read_bytes() == files[member.path]
        assert member.size == len(files[member.path])
        assert member.sha256 == hashlib.sha256(files[member.path]).hexdigest()
        assert stat.S_IMODE(written.stat().st_mode) & 0o7111 == 0  # no exec / setuid from the archive
    assert extracted.total_bytes == sum(map(len, files.values()))


def test_setuid_and_exec_bits_are_dropped(tmp_path: Path) -> None:
    files = model_files()
    archive = write_zip(tmp_path / "m.zip", files, modes={f"{FOLDER}/model.onnx": 0o104755})

    extract_zip(archive, tmp_path / "out", **LIMITS)

    mode = (tmp_path / "out" / FOLDER / "model.onnx").stat().st_mode
    assert stat.S_IMODE(mode) & 0o7111 == 0


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (f"{FOLDER}/../../evil.txt", r"'\.\.'"),
        ("../evil.txt", r"'\.\.'"),
        ("/etc/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
        (f"{FOLDER}\\..\\evil.txt", "backslash"),
        (f"{FOLDER}//evil.txt", "empty"),
        (f"{FOLDER}/./evil.txt", r"'\.'"),
        ("evil.txt", "not inside the model folder"),
        ("other-folder/evil.txt", "exactly one top folder"),
    ],
)
def test_refuses_entries_outside_the_model_folder(tmp_path: Path, name: str, match: str) -> None:
    archive = write_zip(tmp_path / "m.zip", {**model_files(), name: b"pwned"})

    with pytest.raises(UnsafeModelArchive, match=match):
        extract_zip(archive, tmp_path / "out", **LIMITS)
    assert not any(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize(
    ("mode", "match"),
    [(0o120777, "symbolic link"), (0o010644, "not a regular file"), (0o020644, "not a regular file")],
    ids=["symlink", "fifo", "char-device"],
)
def test_refuses_links_and_special_files(tmp_path: Path, mode: int, match: str) -> None:
    name = f"{FOLDER}/vocab.txt"
    archive = write_zip(tmp_path / "m.zip", {**model_files(), name: b"/etc/passwd"}, modes={name: mode})

    with pytest.raises(UnsafeModelArchive, match=match):
        extract_zip(archive, tmp_path / "out", **LIMITS)
    assert not (tmp_path / "out" / FOLDER / "vocab.txt").exists()


def test_refuses_duplicate_entries(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr(f"{FOLDER}/config.json", b"{}")
        with pytest.warns(UserWarning, match="Duplicate"):
            zipped.writestr(f"{FOLDER}/config.json", b'{"evil": 1}')

    with pytest.raises(UnsafeModelArchive, match="twice"):
        extract_zip(path, tmp_path / "out", **LIMITS)


def test_refuses_the_wrong_top_folder_when_one_is_expected(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", model_files("ms-marco-MiniLM-L-12-v2"))

    with pytest.raises(UnsafeModelArchive, match="expected 'ms-marco-TinyBERT-L-2-v2'"):
        extract_zip(archive, tmp_path / "out", expected_top_folder=FOLDER, **LIMITS)


def test_refuses_too_many_files(tmp_path: Path) -> None:
    files = {f"{FOLDER}/file-{index}.txt": b"x" for index in range(17)}
    archive = write_zip(tmp_path / "m.zip", files)

    with pytest.raises(UnsafeModelArchive, match="MODEL_ARCHIVE_MAX_FILES"):
        extract_zip(archive, tmp_path / "out", **LIMITS)


def test_refuses_a_declared_zip_bomb_before_writing_anything(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {f"{FOLDER}/model.onnx": bytes(11 * 1024 * 1024)})
    assert archive.stat().st_size < 64 * 1024

    with pytest.raises(UnsafeModelArchive, match="declares"):
        extract_zip(archive, tmp_path / "out", **LIMITS)
    assert not (tmp_path / "out").exists()


def _lie_about_sizes(data: bytes, declared: int) -> bytes:
    """Rewrite every local and central header to declare ``declared`` uncompressed bytes."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := patched.find(signature, start)) != -1:
            struct.pack_into("<I", patched, start + offset, declared)
            start += 4
    return bytes(patched)


def test_headers_that_understate_the_size_are_caught_while_reading(tmp_path: Path) -> None:
    # Given a bomb whose headers claim 1 KB per file while the data inflates to 11 MB
    honest = io.BytesIO()
    write_zip(tmp_path / "honest.zip", {f"{FOLDER}/model.onnx": bytes(11 * 1024 * 1024)})
    honest.write((tmp_path / "honest.zip").read_bytes())
    archive = tmp_path / "liar.zip"
    archive.write_bytes(_lie_about_sizes(honest.getvalue(), 1024))

    # When / Then: the declared total passes the limit, the bytes actually read do not get written
    with pytest.raises(UnsafeModelArchive):
        extract_zip(archive, tmp_path / "out", **LIMITS)
    written = sum(path.stat().st_size for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert written <= 1024


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100)])
def test_refuses_what_is_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(content)

    with pytest.raises(UnsafeModelArchive, match="not a valid zip"):
        extract_zip(path, tmp_path / "out", label="s3://bucket/broken.zip", **LIMITS)


def test_refuses_an_empty_archive(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "empty.zip", {})

    with pytest.raises(UnsafeModelArchive, match="empty"):
        extract_zip(archive, tmp_path / "out", **LIMITS)


def test_corrupt_member_data_is_an_unsafe_archive(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "m.zip", model_files())
    data = bytearray(archive.read_bytes())
    onnx_at = data.find(b"model.onnx") + len(b"model.onnx")
    for index in range(onnx_at, onnx_at + 200):
        data[index] ^= 0x5A
    archive.write_bytes(bytes(data))

    with pytest.raises(UnsafeModelArchive):
        extract_zip(archive, tmp_path / "out", **LIMITS)


_NAME_PARTS = st.sampled_from(["..", ".", "", "a", "b", "x y", "/", "\\", "C:", "link", FOLDER])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(_NAME_PARTS, min_size=1, max_size=4).map("/".join), min_size=1, max_size=4))
def test_nothing_is_ever_written_outside_the_destination(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    root = tmp_path_factory.mktemp("prop")
    files = {name: b"data" for name in dict.fromkeys(names)}
    archive = write_zip(root / "m.zip", files)
    destination = root / "sandbox" / "out"

    try:
        extracted = extract_zip(archive, destination, **LIMITS)
    except UnsafeModelArchive:
        extracted = None

    outside = [path for path in root.rglob("*") if path.is_file() and path.name != "m.zip"]
    assert all(path.resolve().is_relative_to(destination.resolve()) for path in outside)
    if extracted is not None:
        assert all(not member.path.startswith(("/", "..")) for member in extracted.members)


def test_a_path_that_is_both_file_and_folder_is_refused(tmp_path: Path) -> None:
    # Found by the property test above: "a/a" as a file and "a/a/a" beneath it crashed mkdir.
    archive = write_zip(tmp_path / "m.zip", {f"{FOLDER}/x": b"file", f"{FOLDER}/x/y": b"under a file"})
    with pytest.raises(UnsafeModelArchive, match="both a file and a folder"):
        extract_zip(archive, tmp_path / "out", **LIMITS)
