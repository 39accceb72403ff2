"""tests/sam_local run only under `./dev sam-local` (tools/sam_local/run.sh), which starts Docker, builds the
base image and the x86_64 function and names the SAM command in SAM_LOCAL_COMMAND. Anywhere else they are not
collected at all, so the main test run neither runs nor reports them."""

from __future__ import annotations

import os

import pytest

from tests.sam_local.sam_cli import ANSWERS

if not os.environ.get("SAM_LOCAL_COMMAND"):
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ANSWERS:
        terminalreporter.section("answers through sam local (status, error type)")
        width = max(map(len, ANSWERS))
        for what in sorted(ANSWERS):
            terminalreporter.write_line(f"{what:<{width}}  {ANSWERS[what]}")
