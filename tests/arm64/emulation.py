"""How tests/arm64 runs code: the arm64 function package under QEMU (tools/arm64/setup.sh), and the same scripts
on this host's x86_64 interpreter for the reference they are compared with.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "arm64"
EMULATED_PYTHON = TOOLS / "bin" / "python3.13"  # qemu-aarch64 -cpu neoverse-n1 running trixie's CPython 3.13
SYSROOT = TOOLS / "sysroot"
FLASHRANK_DIR = TOOLS / "flashrank"
RUNTIME_DIR = TOOLS / "runtime"  # Lambda's /var/runtime: awslambdaric and its imports
HOST_PYTHON = REPO / ".venv" / "bin" / "python"
HOST_PACKAGE = REPO / "handler"  # the x86_64 reference: the same sources on the same pinned wheels (.venv)
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
MODEL_LAYER_ROOT = REPO / ".fixtures" / "int8"  # the layer's /opt/models: one folder per model name
EMULATED_SECONDS = 600  # a ceiling for one emulated process on a loaded machine, not a budget


def arm64_package() -> Path:
    """The package handler/Makefile built with ARCH=aarch64 (`./dev arm64` builds it and names it)."""
    location = os.environ.get("RERANKER_ARM64_PACKAGE_DIR")
    if not location:
        pytest.fail("RERANKER_ARM64_PACKAGE_DIR is not set: run these tests with ./dev arm64")
    package = Path(location)
    assert (package / "reranker" / "app.py").is_file(), f"{package} is not a built function package"
    if not EMULATED_PYTHON.is_file():
        pytest.fail(f"{EMULATED_PYTHON} is missing: run ./dev arm64 (tools/arm64/setup.sh)")
    return package


def lambda_environment(task_root: Path) -> dict[str, str]:
    """What Lambda sets for a python3.13 function with the template's variables; nothing of the developer's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": "/tmp",  # Lambda's only writable folder
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": "reranker",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",  # the template's default: one vCPU
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # template.yaml's Environment, the model read from the layer's folder as on Lambda
        "POWERTOOLS_SERVICE_NAME": "reranker",
        "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "MODEL_NAME": MODEL_NAME,
        "MODEL_LAYER_ROOT": str(MODEL_LAYER_ROOT),
        "AUTH_MODE": "none",
        # no X-Ray daemon here (the template turns tracing on)
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@dataclass
class Run:
    """A script running in the background, started at once so that emulated runs overlap."""

    label: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path  # its stdout and stderr: a file, so that a chatty run never stalls on a full pipe
    started: float

    def wait(self) -> tuple[Path, float]:
        try:
            self.process.wait(timeout=EMULATED_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.label} did not finish in {EMULATED_SECONDS} s:\n{self.tail()}")
        assert self.process.returncode == 0, f"{self.label} failed:\n{self.tail()}"
        return self.out, time.monotonic() - self.started

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def start(label: str, command: list[str], env: dict[str, str], out: Path, cwd: Path) -> Run:
    log = out.with_suffix(".log")
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    return Run(label, process, out, log, time.monotonic())


def emulated(*arguments: str) -> list[str]:
    """`python3.13 -I -S ...` on the emulated arm64 interpreter: no site-packages, no PYTHON* variables."""
    return [str(EMULATED_PYTHON), "-I", "-S", *arguments]


def native(*arguments: str) -> list[str]:
    """The same script on this host's interpreter, .venv's site-packages providing the wheels."""
    return [str(HOST_PYTHON), "-I", *arguments]


def script(name: str) -> str:
    return str(Path(__file__).with_name(name))
