"""Benchmark children under a CPU quota (N vCPUs the way Lambda enforces them): a cgroup and a runner.

Lambda grants vCPUs as a CPU quota over cores the process can all see, not as an affinity mask, and
onnxruntime pins its intra-op worker threads to cores itself, outside the process's affinity (so taskset
and os.sched_setaffinity do not make an N-vCPU benchmark for a session with intra-op workers). A child run
here sees every core and gets ``vcpus`` x 100 ms of CPU per 100 ms period: cgroup v1's
``cpu.cfs_quota_us``, or cgroup v2's ``cpu.max``. Creating the cgroup needs root (or a delegated,
writable cgroup directory); each child gets its own, removed when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.pinned import child_environment

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _quota_us(vcpus: float) -> int:
    if vcpus <= 0:
        raise ValueError(f"a CPU quota needs a positive number of vCPUs, got {vcpus}")
    return max(1000, round(vcpus * PERIOD_US))  # the kernel refuses quotas under 1 ms


def _v1_parent() -> Path | None:
    parent = CGROUP_ROOT / "cpu"
    return parent if (parent / "cpu.cfs_quota_us").is_file() else None


def _v2_parent() -> Path | None:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.is_file() or "cpu" not in controllers.read_text().split():
        return None
    return CGROUP_ROOT


@contextlib.contextmanager
def quota_group(vcpus: float, name: str) -> Iterator[Path]:
    """A fresh cgroup limited to ``vcpus`` of CPU (fractions allowed); yields the file a pid is written to."""
    quota = _quota_us(vcpus)
    v1, v2 = _v1_parent(), _v2_parent()
    parent = v1 or v2
    if parent is None:
        raise SystemExit(f"no cgroup cpu controller under {CGROUP_ROOT}: a CPU quota cannot be set here")
    group = parent / name
    try:
        group.mkdir()
        if v1 is not None:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            subtree = parent / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu")
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        raise SystemExit(
            f"cannot make the cgroup {group} with a CPU quota ({exc}): run as root, or where the cgroup "
            "filesystem is writable"
        ) from exc
    try:
        yield group / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):  # busy only if a child outlived its run; nothing more to do then
            group.rmdir()


def run_under_quota(
    argv: Sequence[str],
    *,
    vcpus: float,
    timeout: float = 1800,
    environment: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh interpreter limited to ``vcpus``; its last stdout line is JSON.

    The child joins the cgroup between fork and exec, so the quota holds before it starts any thread.
    """
    with quota_group(vcpus, f"reranker-bench-{os.getpid()}-{vcpus:g}") as procs:

        def join() -> None:
            procs.write_text(str(os.getpid()))

        output = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            check=False,
            env=child_environment(environment),
            timeout=timeout,
            preexec_fn=join,
            cwd=cwd,
        )
    if output.returncode != 0:
        raise SystemExit(f"benchmark child failed ({output.returncode}):\n{output.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result
