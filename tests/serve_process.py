"""`./dev serve` as a real process on a free loopback port, for tests that drive it with real clients."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
STARTUP_SECONDS = 60.0


@contextmanager
def serve_process(model_dir: Path, **environment: str) -> Iterator[str]:
    """Start ``python -m tools.serve --port 0`` (what ``./dev serve`` runs); yield its base URL; stop it.

    Its stderr (one line per request) goes to a file, so a long fuzzing run never blocks on a full pipe.
    """
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", **environment}
    with tempfile.TemporaryDirectory(prefix="serve-") as directory:
        log_path = Path(directory) / "stderr.log"
        with log_path.open("w", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tools.serve", "--port", "0", "--model-dir", str(model_dir)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            yield _wait_for_url(process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        match = _LISTENING.search(text)
        if match:
            return match.group(1)
        if process.poll() is not None:
            raise AssertionError(f"tools.serve exited with {process.returncode}:\n{text[-4000:]}")
        time.sleep(0.05)
    raise AssertionError(f"tools.serve did not listen within {STARTUP_SECONDS} s")
