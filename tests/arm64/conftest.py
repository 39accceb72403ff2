"""tests/arm64: the arm64 function package under emulation, compared with x86_64 (`./dev arm64`).

The emulated runs start together when the session starts (they are the slow part and overlap on two cores);
each test waits for the report it needs. Figures the tests measure are printed at the end of the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.arm64.emulation import (
    FLASHRANK_DIR,
    HOST_PACKAGE,
    REPO,
    Run,
    arm64_package,
    emulated,
    lambda_environment,
    native,
    script,
    start,
)
from tests.arm64.workload import FAMILIES, build_jobs

FIGURES: list[str] = []


def record(line: str) -> None:
    """A measured figure for the summary at the end of the run."""
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("arm64 (qemu-aarch64 -cpu neoverse-n1) against x86_64")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    package = arm64_package()
    work = tmp_path_factory.mktemp("arm64")
    jobs = build_jobs(REPO / ".fixtures")
    started: dict[str, Run] = {}

    def workload(name: str, family: str = "") -> str:
        path = work / f"{name}.json"
        chosen = [job.as_json() for job in jobs if job.name.startswith(family)]
        path.write_text(json.dumps({"jobs": chosen}), encoding="utf-8")
        return str(path)

    # One emulated process per family, so that they share the cores with the events run.
    for family in FAMILIES:
        label, out = f"arm64 scores {family}", work / f"arm64-scores-{family}.json"
        command = emulated(
            script("score_pairs.py"), workload(family, family), str(out), str(package), str(FLASHRANK_DIR)
        )
        started[label] = start(label, command, lambda_environment(package), out, work)
    out = work / "arm64-events.json"
    command = emulated(script("answer_events.py"), str(package), str(REPO), str(out))
    started["arm64 events"] = start("arm64 events", command, lambda_environment(package), out, work)
    out = work / "x86_64-events.json"
    command = native(script("answer_events.py"), str(HOST_PACKAGE), str(REPO), str(out))
    started["x86_64 events"] = start("x86_64 events", command, lambda_environment(HOST_PACKAGE), out, work)
    out = work / "x86_64-scores.json"
    command = native(script("score_pairs.py"), workload("all"), str(out), str(HOST_PACKAGE))
    started["x86_64 scores"] = start("x86_64 scores", command, lambda_environment(HOST_PACKAGE), out, work)
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def _report(runs: dict[str, Run], label: str) -> dict[str, Any]:
    out, seconds = runs[label].wait()
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    report["wall_seconds"] = seconds
    return report


@pytest.fixture(scope="session")
def arm64_events(runs: dict[str, Run]) -> dict[str, Any]:
    return _report(runs, "arm64 events")


@pytest.fixture(scope="session")
def x86_64_events(runs: dict[str, Run]) -> dict[str, Any]:
    return _report(runs, "x86_64 events")


@pytest.fixture(scope="session")
def arm64_scores(runs: dict[str, Run]) -> dict[str, Any]:
    """The per-family reports as one."""
    reports = [_report(runs, f"arm64 scores {family}") for family in FAMILIES]
    merged = {**reports[0], "scores": {}, "seconds": {}}
    for report in reports:
        assert (report["machine"], report["onnxruntime"]) == (merged["machine"], merged["onnxruntime"])
        merged["scores"].update(report["scores"])
        merged["seconds"].update(report["seconds"])
        merged["wall_seconds"] = max(merged["wall_seconds"], report["wall_seconds"])
    return merged


@pytest.fixture(scope="session")
def x86_64_scores(runs: dict[str, Run]) -> dict[str, Any]:
    return _report(runs, "x86_64 scores")


@pytest.fixture(scope="session")
def package() -> Path:
    return arm64_package()
