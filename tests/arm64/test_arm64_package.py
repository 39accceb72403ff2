"""The arm64 function package under emulation answers every event as the x86_64 code does, loads nothing from
outside itself and the system, and runs under the Runtime Interface Client's aarch64 build."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.arm64.compare import (
    ARCH_TOLERANCE,
    NEAR_TIE,
    differences,
    order_swaps,
    rankings,
    result_key,
    result_score,
    without_scores,
)
from tests.arm64.conftest import record
from tests.arm64.emulation import (
    EMULATED_PYTHON,
    MODEL_NAME,
    REPO,
    RUNTIME_DIR,
    SYSROOT,
    lambda_environment,
)
from tests.events import EXPECTED, event_files
from tests.integration.test_runtime_interface import RuntimeApi, check_documented_answers, make_handler, stop
from tests.loopback import serving

INIT_SECONDS = 180  # emulated imports take 50-100x longer than native ones


def test_every_event_answers_on_arm64_as_on_x86_64(
    arm64_events: dict[str, Any], x86_64_events: dict[str, Any]
) -> None:
    arm64, x86_64 = arm64_events["answers"], x86_64_events["answers"]
    assert (arm64_events["machine"], x86_64_events["machine"]) == ("aarch64", "x86_64")
    assert sorted(arm64) == sorted(x86_64) == event_files()
    problems: list[str] = []
    swaps = results = 0
    worst = 0.0
    for name, expected in x86_64.items():
        answer = arm64[name]
        # Then the status, error type and message are the x86_64 ones (and the documented ones)
        for field in ("status", "error_type", "message"):
            if answer[field] != expected[field]:
                problems.append(f"{name}: {field} {answer[field]!r} on arm64, {expected[field]!r} on x86_64")
        if answer["status"] != EXPECTED[name].status:
            problems.append(f"{name}: status {answer['status']}, documented {EXPECTED[name].status}")
        # and so is every field but the scores: ids, texts, meta, usage, headers
        for part in ("body", "headers"):
            found = differences(without_scores(answer[part]), without_scores(expected[part]), part)
            problems += [f"{name}: {line}" for line in found]
        # and the order is x86_64's wherever two scores are not a near tie
        for ours, theirs in zip(rankings(answer["body"]), rankings(expected["body"]), strict=True):
            reference = {result_key(item): result_score(item) for item in theirs}
            scores = {result_key(item): result_score(item) for item in ours}
            if scores.keys() != reference.keys():
                continue  # reported above as a body difference
            worst = max(worst, *(abs(scores[key] - reference[key]) for key in reference))
            swapped, wrong = order_swaps([result_key(item) for item in ours], reference)
            swaps += swapped
            results += len(ours)
            problems += [
                f"{name}: {a} ranked above {b}, more than {NEAR_TIE} apart on x86_64" for a, b in wrong
            ]
    assert problems == []
    assert worst <= ARCH_TOLERANCE, worst
    record(
        f"events: {len(arm64)} files answered as on x86_64 (status, error type, message, ids, every field); "
        f"{results} ranked results, {swaps} near-tie swaps; max |score difference| {worst:.1e}"
    )


def test_the_arm64_package_loads_nothing_from_outside_itself_and_the_system(
    arm64_events: dict[str, Any], package: Path
) -> None:
    roots = (package.resolve(), SYSROOT.resolve(), (REPO / "tests").resolve(), (REPO / "tools").resolve())
    outside = [
        module
        for module in arm64_events["modules"]
        if not any(Path(module).resolve().is_relative_to(root) for root in roots)
    ]
    assert outside == []
    libraries = [
        library
        for library in arm64_events["libraries"]
        if not any(Path(library).resolve().is_relative_to(root) for root in roots[:2])
    ]
    assert libraries == []
    assert any(library.endswith("aarch64-linux-gnu.so") for library in arm64_events["libraries"])


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    api = RuntimeApi()
    with serving(make_handler(api)) as address:
        api.address = address
        yield api


def test_runtime_interface_client_serves_the_arm64_package(package: Path, runtime_api: RuntimeApi) -> None:
    # Given the arm64 package as /var/task and awslambdaric's aarch64 wheel as /var/runtime, under emulation
    env = {
        **lambda_environment(package),
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "PYTHONPATH": f"{package}:{RUNTIME_DIR}",
    }
    process = subprocess.Popen(
        [str(EMULATED_PYTHON), "-S", "-m", "awslambdaric", "reranker.app.lambda_handler"],
        cwd=package,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When the runtime has initialised and is sent a rerank, an HTTP call and a bad request, each answers as documented
        check_documented_answers(runtime_api, init_seconds=INIT_SECONDS, model_name=MODEL_NAME)
    finally:
        output = stop(process)
    assert any('"model loaded"' in line for line in output.splitlines()), output[-4000:]
    assert (RUNTIME_DIR / "runtime_client.cpython-313-aarch64-linux-gnu.so").is_file()  # the client's C part


def test_the_arm64_locks_are_current_with_uv_lock() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "tools.arm64.lock", "--check"],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
