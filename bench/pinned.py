"""Benchmark children pinned to N cores (N vCPUs): the affinity helper and the fresh-interpreter runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any


def pin_to_cores(vcpus: int) -> list[int]:
    """Restrict this process (and every thread it starts from now on) to the first ``vcpus`` usable cores."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < vcpus:
        raise SystemExit(f"{vcpus} vCPUs asked for, only {len(allowed)} cores usable here")
    os.sched_setaffinity(0, allowed[:vcpus])
    return allowed[:vcpus]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without PYTHONDONTWRITEBYTECODE (children must import from .pyc, as Lambda does)."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment.update(extra or {})
    return environment


def run_pinned(
    code: str, *, vcpus: int = 1, timeout: float = 300, environment: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter pinned to ``vcpus`` cores; its last stdout line is a JSON object.

    The affinity is set between fork and exec, so it holds before the child starts any thread of its own.
    """
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=child_environment(environment),
        timeout=timeout,
        preexec_fn=lambda: pin_to_cores(vcpus),
    )
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result
