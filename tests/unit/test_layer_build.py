"""The model layer build (layer/build_layer.py): pinned sources only, verified before extraction, safe tree."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import stat
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loopback import serving

_SPEC = importlib.util.spec_from_file_location(
    "build_layer", Path(__file__).resolve().parents[2] / "layer" / "build_layer.py"
)
assert _SPEC is not None and _SPEC.loader is not None
build_layer = importlib.util.module_from_spec(_SPEC)
sys.modules["build_layer"] = build_layer
_SPEC.loader.exec_module(build_layer)

MODEL = "ms-marco-TinyBERT-L-2-v2"
GOOD_FILES = {
    "config.json": b"{}",
    "tokenizer.json": b'{"model": {}}',
    "tokenizer_config.json": b"{}",
    "special_tokens_map.json": b"{}",
    "flashrank-TinyBERT-L-2-v2.onnx": b"\x08\x07onnx-bytes" * 100,
}


def make_zip(path: Path, members: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> str:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, "/etc/passwd")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def good_members(model: str = MODEL) -> dict[str, bytes]:
    return {f"{model}/{name}": data for name, data in GOOD_FILES.items()}


def local_env(archive: Path, sha256: str, model: str = MODEL) -> dict[str, str]:
    return {"MODEL_NAME": model, "MODEL_ARCHIVE": str(archive), "MODEL_ARCHIVE_SHA256": sha256}


def test_builds_the_model_tree_from_a_good_local_archive(tmp_path: Path) -> None:
    # Given a well-formed local archive and its sha256
    archive = tmp_path / "model.zip"
    sha256 = make_zip(archive, {f"{MODEL}/": b"", **good_members()})
    # When the layer is built
    source = build_layer.resolve_source(local_env(archive, sha256), tmp_path)
    model_dir = build_layer.build(source, tmp_path / "artifacts")
    # Then the model sits under models/<name>/ with the archive's sha256 beside it, and nothing else
    assert model_dir == tmp_path / "artifacts" / "models" / MODEL
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*GOOD_FILES, ".archive-sha256"])
    assert (model_dir / ".archive-sha256").read_text() == sha256 + "\n"
    for name, data in GOOD_FILES.items():
        assert (model_dir / name).read_bytes() == data
    assert [p.name for p in (tmp_path / "artifacts" / "models").iterdir()] == [MODEL]


def test_relative_archive_paths_are_taken_from_the_base_dir(tmp_path: Path) -> None:
    archive = tmp_path / "fixtures" / "model.zip"
    archive.parent.mkdir()
    sha256 = make_zip(archive, good_members())
    source = build_layer.resolve_source(local_env(Path("fixtures/model.zip"), sha256), tmp_path)
    assert source.local_path == archive


def test_rebuilding_replaces_the_previous_tree(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    sha256 = make_zip(archive, good_members())
    source = build_layer.resolve_source(local_env(archive, sha256), tmp_path)
    build_layer.build(source, tmp_path / "out")
    (tmp_path / "out" / "models" / MODEL / "stale.txt").write_text("old")
    model_dir = build_layer.build(source, tmp_path / "out")
    assert not (model_dir / "stale.txt").exists()


def test_refuses_a_wrong_hash_before_extracting(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    make_zip(archive, good_members())
    source = build_layer.resolve_source(local_env(archive, "0" * 64), tmp_path)
    with pytest.raises(build_layer.LayerBuildError, match="sha256 mismatch"):
        build_layer.build(source, tmp_path / "out")
    assert not (tmp_path / "out" / "models" / MODEL).exists()


def test_a_local_archive_needs_a_hash(tmp_path: Path) -> None:
    with pytest.raises(build_layer.LayerBuildError, match="MODEL_ARCHIVE_SHA256"):
        build_layer.resolve_source({"MODEL_ARCHIVE": str(tmp_path / "x.zip")}, tmp_path)


def test_refuses_an_unknown_model_name_for_download(tmp_path: Path) -> None:
    with pytest.raises(build_layer.LayerBuildError, match="unknown model 'ms-marco-MiniLM-L-6-v2'"):
        build_layer.resolve_source({"MODEL_NAME": "ms-marco-MiniLM-L-6-v2"}, tmp_path)


# The five pairwise archives FlashRank publishes (shared/REFERENCE.md): name, bytes, sha256.
FLASHRANK_ARCHIVES = [
    (
        "ms-marco-TinyBERT-L-2-v2",
        3_421_983,
        "752eddf1c5ece3c5e6115e9ab52eb3b16436bbf9b3a091cbb62b5b8eadc47105",
    ),
    (
        "ms-marco-MiniLM-L-12-v2",
        22_696_961,
        "bdd3772b651ffc34f70e414049285bb55ccc6d1b8e29d0640f836d44f70ec77a",
    ),
    ("ce-esci-MiniLM-L12-v2", 22_820_403, "da1bbfbc8fba6d8dfe336acca6792aaa2a9e2a5cbc25fd268ce4cf5d164e2866"),
    ("rank-T5-flan", 77_246_772, "71d841f94f4ccaab463b944c315f3aa91bcdc7e8b01e3131d963f635fc579f67"),
    (
        "ms-marco-MultiBERT-L-12",
        103_473_926,
        "2c8ae5542f1538e355e9f295d349fc030b5cf7d398c8728c362f0e5129776971",
    ),
]


@pytest.mark.parametrize(
    ("name", "size", "sha256"), FLASHRANK_ARCHIVES, ids=[row[0] for row in FLASHRANK_ARCHIVES]
)
def test_every_flashrank_model_is_pinned_by_name(tmp_path: Path, name: str, size: int, sha256: str) -> None:
    source = build_layer.resolve_source({"MODEL_NAME": name}, tmp_path)
    assert source.url == f"https://huggingface.co/prithivida/flashrank/resolve/main/{name}.zip"
    assert (source.size, source.sha256) == (size, sha256)
    assert sorted(build_layer.PINNED_ARCHIVES) == sorted(row[0] for row in FLASHRANK_ARCHIVES)


def zip_of_size(path: Path, model: str, onnx_bytes: int) -> str:
    """A FlashRank-layout archive whose ONNX file unpacks to onnx_bytes (zeros: a few KB on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in GOOD_FILES.items():
            if not name.endswith(".onnx"):
                bundle.writestr(f"{model}/{name}", data)
        with bundle.open(f"{model}/model_Q.onnx", "w", force_zip64=True) as sink:
            chunk = bytes(1024 * 1024)
            left = onnx_bytes
            while left:
                sink.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_refuses_a_model_that_would_not_fit_beside_the_function_before_extracting(tmp_path: Path) -> None:
    # Given an archive that unpacks to one byte more than the layer's share of Lambda's limit
    share = build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES - build_layer.FUNCTION_PACKAGE_BUDGET_BYTES
    small_files = sum(len(data) for name, data in GOOD_FILES.items() if not name.endswith(".onnx"))
    onnx_bytes = share - small_files - 65 + 1  # 65: the .archive-sha256 line
    archive = tmp_path / "large.zip"
    sha256 = zip_of_size(archive, "ms-marco-MultiBERT-L-12", onnx_bytes)
    source = build_layer.resolve_source(local_env(archive, sha256, "ms-marco-MultiBERT-L-12"), tmp_path)

    # When the layer is built, Then it is refused with the limit, the sizes and the S3 way out
    with pytest.raises(build_layer.LayerBuildError) as refused:
        build_layer.build(source, tmp_path / "out")
    message = str(refused.value)
    assert "ms-marco-MultiBERT-L-12 does not fit in a layer" in message
    assert "262,144,000 bytes" in message
    assert f"{share + 1:,} bytes" in message
    assert f"{build_layer.FUNCTION_PACKAGE_BUDGET_BYTES:,} bytes" in message
    assert "ModelS3Uri" in message and "ModelSha256" in message
    # And nothing was extracted
    assert not any((tmp_path / "out" / "models").rglob("*.onnx"))


def test_a_model_that_exactly_fits_beside_the_function_is_built(tmp_path: Path) -> None:
    share = build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES - build_layer.FUNCTION_PACKAGE_BUDGET_BYTES
    small_files = sum(len(data) for name, data in GOOD_FILES.items() if not name.endswith(".onnx"))
    archive = tmp_path / "fits.zip"
    sha256 = zip_of_size(archive, MODEL, share - small_files - 65)
    model_dir = build_layer.build(
        build_layer.resolve_source(local_env(archive, sha256), tmp_path), tmp_path / "out"
    )
    assert sum(path.stat().st_size for path in model_dir.iterdir()) == share


def test_a_measured_function_package_replaces_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a built function (a sparse file: no disk used) that leaves less room than the budget would
    function_dir = tmp_path / "function"
    function_dir.mkdir()
    with (function_dir / "libbig.so").open("wb") as sparse:
        sparse.truncate(build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES - 1000)
    archive = tmp_path / "model.zip"
    sha256 = make_zip(archive, good_members())
    for name, value in {**local_env(archive, sha256), "FUNCTION_PACKAGE_DIR": str(function_dir)}.items():
        monkeypatch.setenv(name, value)
    # When the layer is built by the command line, Then the small model is refused against the measurement
    assert build_layer.main(["--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "does not fit in a layer" in error and f"the built function in {function_dir}" in error
    assert f"{build_layer.LAMBDA_UNZIPPED_LIMIT_BYTES - 1000:,} bytes" in error
    # And with the function's own budget the same model fits
    monkeypatch.delenv("FUNCTION_PACKAGE_DIR")
    assert build_layer.main(["--out", str(tmp_path / "out")]) == 0


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "."])
def test_refuses_model_names_that_are_not_plain_directory_names(tmp_path: Path, name: str) -> None:
    environ = {"MODEL_NAME": name} if name else {"MODEL_NAME": "-x"}
    with pytest.raises(build_layer.LayerBuildError, match="not a plain directory name"):
        build_layer.resolve_source(environ, tmp_path)


def test_pinned_models_download_from_flashrank_with_their_hash_and_size(tmp_path: Path) -> None:
    source = build_layer.resolve_source({"MODEL_NAME": "ms-marco-MiniLM-L-12-v2"}, tmp_path)
    assert (
        source.url == "https://huggingface.co/prithivida/flashrank/resolve/main/ms-marco-MiniLM-L-12-v2.zip"
    )
    assert source.sha256 == "bdd3772b651ffc34f70e414049285bb55ccc6d1b8e29d0640f836d44f70ec77a"
    assert source.size == 22_696_961
    default = build_layer.resolve_source({}, tmp_path)
    assert (default.model_name, default.size) == (MODEL, 3_421_983)
    assert default.sha256 == "752eddf1c5ece3c5e6115e9ab52eb3b16436bbf9b3a091cbb62b5b8eadc47105"


@pytest.fixture
def pinned_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, int]:
    """A local archive pinned as if it were FlashRank's published TinyBERT."""
    archive = tmp_path / "served" / f"{MODEL}.zip"
    archive.parent.mkdir()
    sha256 = make_zip(archive, good_members())
    size = archive.stat().st_size
    monkeypatch.setitem(
        build_layer.PINNED_ARCHIVES,
        MODEL,
        build_layer.PinnedArchive(sha256=sha256, size=size, url=archive.as_uri()),
    )
    return archive, sha256, size


@pytest.fixture
def loopback_server(pinned_fixture: tuple[Path, str, int]) -> Iterator[str]:
    directory = pinned_fixture[0].parent

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as address:
        yield f"http://{address}"


def test_downloads_verifies_and_extracts_a_pinned_archive(tmp_path: Path, loopback_server: str) -> None:
    environ = {"MODEL_NAME": MODEL, "MODEL_DOWNLOAD_URL": f"{loopback_server}/{MODEL}.zip"}
    source = build_layer.resolve_source(environ, tmp_path)
    model_dir = build_layer.build(source, tmp_path / "out")
    assert (model_dir / "tokenizer.json").read_bytes() == GOOD_FILES["tokenizer.json"]


def test_refuses_a_download_of_the_wrong_size(
    tmp_path: Path, pinned_fixture: tuple[Path, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, sha256, size = pinned_fixture
    monkeypatch.setitem(build_layer.PINNED_ARCHIVES, MODEL, build_layer.PinnedArchive(sha256, size - 1))
    environ = {"MODEL_NAME": MODEL, "MODEL_DOWNLOAD_URL": archive.as_uri()}
    source = build_layer.resolve_source(environ, tmp_path)
    with pytest.raises(build_layer.LayerBuildError, match="exceeds the pinned size"):
        build_layer.build(source, tmp_path / "out")


def test_refuses_a_download_that_is_too_short(
    tmp_path: Path, pinned_fixture: tuple[Path, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, sha256, size = pinned_fixture
    monkeypatch.setitem(build_layer.PINNED_ARCHIVES, MODEL, build_layer.PinnedArchive(sha256, size + 1))
    environ = {"MODEL_NAME": MODEL, "MODEL_DOWNLOAD_URL": archive.as_uri()}
    with pytest.raises(build_layer.LayerBuildError, match="size mismatch"):
        build_layer.build(build_layer.resolve_source(environ, tmp_path), tmp_path / "out")


def test_refuses_a_download_with_the_wrong_hash(
    tmp_path: Path, pinned_fixture: tuple[Path, str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, _sha256, size = pinned_fixture
    monkeypatch.setitem(build_layer.PINNED_ARCHIVES, MODEL, build_layer.PinnedArchive("f" * 64, size))
    environ = {"MODEL_NAME": MODEL, "MODEL_DOWNLOAD_URL": archive.as_uri()}
    with pytest.raises(build_layer.LayerBuildError, match="sha256 mismatch"):
        build_layer.build(build_layer.resolve_source(environ, tmp_path), tmp_path / "out")


def test_refuses_plain_http_downloads(tmp_path: Path) -> None:
    with pytest.raises(build_layer.LayerBuildError, match="https"):
        build_layer.download("http://127.0.0.1.example.com/x.zip", tmp_path / "x.zip", 10)


@pytest.mark.parametrize(
    ("members", "symlinks", "message"),
    [
        ({"/etc/passwd": b"x"}, (), "absolute"),
        ({f"{MODEL}/../../escape.txt": b"x"}, (), r"'\.\.'"),
        ({f"{MODEL}\\..\\escape.txt": b"x"}, (), "malformed"),
        ({}, (f"{MODEL}/link.json",), "symlink"),
        ({f"{MODEL}/nested/config.json": b"x"}, (), "directly in"),
        ({"other-model/config.json": b"x"}, (), "directly in"),
        ({f"{MODEL}/f{i}.bin": b"x" for i in range(65)}, (), "more than 64"),
    ],
    ids=["absolute", "dotdot", "backslash", "symlink", "nested", "other-folder", "too-many-files"],
)
def test_refuses_unsafe_archives(
    tmp_path: Path, members: dict[str, bytes], symlinks: tuple[str, ...], message: str
) -> None:
    archive = tmp_path / "bad.zip"
    sha256 = make_zip(archive, {**good_members(), **members}, symlinks=symlinks)
    source = build_layer.resolve_source(local_env(archive, sha256), tmp_path)
    with pytest.raises(build_layer.LayerBuildError, match=message):
        build_layer.build(source, tmp_path / "out")
    assert not (tmp_path / "out" / "models" / MODEL).exists()
    assert not (tmp_path / "escape.txt").exists()


def test_refuses_archives_that_unpack_to_too_many_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    make_zip(archive, good_members())
    with pytest.raises(build_layer.LayerBuildError, match="more than 100 bytes"):
        build_layer.extract_model(archive, MODEL, tmp_path, max_bytes=100)


def test_refuses_archives_missing_a_required_file(tmp_path: Path) -> None:
    members = good_members()
    del members[f"{MODEL}/tokenizer.json"]
    archive = tmp_path / "partial.zip"
    sha256 = make_zip(archive, members)
    source = build_layer.resolve_source(local_env(archive, sha256), tmp_path)
    with pytest.raises(build_layer.LayerBuildError, match=r"lacks .*tokenizer\.json"):
        build_layer.build(source, tmp_path / "out")


def test_refuses_files_that_are_not_zips(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    archive.write_bytes(b"not a zip")
    sha256 = hashlib.sha256(b"not a zip").hexdigest()
    source = build_layer.resolve_source(local_env(archive, sha256), tmp_path)
    with pytest.raises(build_layer.LayerBuildError, match="not a zip"):
        build_layer.build(source, tmp_path / "out")


def test_main_reports_failures_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODEL_NAME", "no-such-model")
    monkeypatch.delenv("MODEL_ARCHIVE", raising=False)
    monkeypatch.delenv("MODEL_ARCHIVE_SHA256", raising=False)
    assert build_layer.main(["--out", str(tmp_path)]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
