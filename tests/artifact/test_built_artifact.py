"""The built function package (handler/Makefile's output), not the source tree: it serves every event,
runs under the Runtime Interface Client, loads nothing from outside itself, and stays within its budget.

`./dev artifact` builds the package for this machine's architecture and runs these tests against it
(RERANKER_ARTIFACT_DIR); without that variable tests/conftest.py does not collect them. The arm64 package that
`sam build` makes is held to the same budget by tools/check_stack.sh.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.events import EXPECTED
from tests.integration.test_runtime_interface import RuntimeApi, check_documented_answers, make_handler, stop
from tests.loopback import serving

REPO = Path(__file__).resolve().parents[2]
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
# What handler/Makefile leaves out; each was checked never to be imported or mapped by the function.
TRIMMED = (
    "numpy/f2py",
    "numpy/_core/tests",
    "numpy/lib/tests",
    "numpy/random/tests",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "aws_lambda_powertools/event_handler/openapi/swagger_ui",
    "bin",
    "wrapt-stubs",
)
# The Runtime Interface Client and its imports: on Lambda they live in /var/runtime, not in the package.
RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")


def load_build_layer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_layer", REPO / "layer" / "build_layer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_layer"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def artifact() -> Path:
    location = os.environ.get("RERANKER_ARTIFACT_DIR")
    if not location:
        pytest.skip("no built package: `./dev artifact` builds one and runs these tests")
    path = Path(location)
    assert (path / "reranker" / "app.py").is_file(), f"{path} is not a built function package"
    return path


@pytest.fixture(scope="module")
def model_dir() -> Path:
    directory = REPO / ".fixtures" / "int8" / MODEL_NAME
    if not directory.is_dir():
        pytest.fail(f"fixture model {directory} is missing: run ./dev setup")
    return directory


def lambda_environment(model_dir: Path) -> dict[str, str]:
    """A bare environment like Lambda's: nothing of the developer's Python setup leaks in."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        "MODEL_DIR": str(model_dir),
        "AWS_LAMBDA_FUNCTION_NAME": "reranker",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
        "SCORE_CACHE_MB": "0",
    }


def package_size(root: Path) -> tuple[int, int]:
    files = [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]
    return sum(path.stat().st_size for path in files), len(files)


def test_package_stays_within_its_budget(artifact: Path) -> None:
    budget = load_build_layer().FUNCTION_PACKAGE_BUDGET_BYTES
    size, count = package_size(artifact)
    assert size <= budget, (
        f"the function package is {size:,} bytes in {count} files, over its budget of {budget:,} bytes "
        "(layer/build_layer.py FUNCTION_PACKAGE_BUDGET_BYTES): the layer's share of Lambda's limit shrinks"
    )


def test_unused_parts_are_left_out(artifact: Path) -> None:
    present = [path for path in TRIMMED if (artifact / path).exists()]
    assert present == []
    assert list(artifact.rglob("*.pyi")) == []
    assert list((artifact / "onnxruntime" / "capi").glob("libonnxruntime.so*")) == []
    assert list(artifact.rglob("*.pyc")), "the package ships no bytecode"


def test_every_event_is_answered_from_the_built_package(
    artifact: Path, model_dir: Path, tmp_path: Path
) -> None:
    # Given a fresh interpreter that sees only the package, the repository's event helpers and the stdlib
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(Path(__file__).with_name("serve_events.py")),
            str(artifact),
            str(REPO),
            str(report),
        ],
        env=lambda_environment(model_dir),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    loaded = json.loads(report.read_text())

    # Then every event gets its documented answer
    for name, expected in EXPECTED.items():
        outcome = loaded["outcomes"][name]
        assert outcome["status"] == expected.status, (name, outcome)
        assert outcome["error_type"] == expected.error_type, (name, outcome)
        if expected.message_contains is not None:
            assert expected.message_contains in outcome["message"], (name, outcome)
        if expected.results is not None:
            assert outcome["results"] == expected.results, (name, outcome)
            assert outcome["model"] == MODEL_NAME

    # And every module and shared library came from the package, the stdlib or the system
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["stdlib"])
    allowed = (artifact.resolve(), stdlib.resolve(), (REPO / "tests").resolve(), (REPO / "tools").resolve())
    outside = [
        module
        for module in loaded["modules"]
        if not any(Path(module).resolve().is_relative_to(root) for root in allowed)
    ]
    assert outside == []
    assert any(
        module.startswith(str(artifact)) and module.endswith("reranker/app.py")
        for module in loaded["modules"]
    )
    libraries = [
        library
        for library in loaded["libraries"]
        if not library.startswith(("/lib", "/usr/lib", str(artifact), str(Path(sys.base_prefix) / "lib")))
    ]
    assert libraries == []


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    with serving(make_handler(api)) as address:
        api.address = address
        yield api


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lambda's /var/runtime: the Runtime Interface Client and its imports, copied from the dev environment."""
    runtime = tmp_path_factory.mktemp("var-runtime")
    for name in RUNTIME_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            if file.parts[0].endswith(".dist-info") or ".." in file.parts:
                continue
            target = runtime / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(distribution.locate_file(file))), target)
    return runtime


def test_runtime_interface_client_serves_the_built_package(
    artifact: Path, model_dir: Path, runtime_api: RuntimeApi, runtime_dir: Path
) -> None:
    # Given the package as /var/task and the client as /var/runtime, no site-packages
    env = {
        **lambda_environment(model_dir),
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "PYTHONPATH": f"{artifact}:{runtime_dir}",
        "LAMBDA_TASK_ROOT": str(artifact),
    }
    process = subprocess.Popen(
        [sys.executable, "-S", "-m", "awslambdaric", "reranker.app.lambda_handler"],
        cwd=artifact,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When the runtime has initialised and is sent a rerank, an HTTP call and a bad request, each answers as documented
        check_documented_answers(runtime_api, init_seconds=60, model_name=MODEL_NAME)
    finally:
        output = stop(process)
    assert any('"model loaded"' in line for line in output.splitlines()), output[-4000:]
