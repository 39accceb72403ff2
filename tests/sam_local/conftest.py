"""tests/sam_local run only under `./dev sam-local` (tools/sam_local/run.sh), which starts Docker, builds the
base image and the x86_64 function and names the SAM command in SAM_LOCAL_COMMAND. Anywhere else they are not
collected at all, so the main test run neither runs nor reports them."""

from __future__ import annotations

import os

if not os.environ.get("SAM_LOCAL_COMMAND"):
    collect_ignore_glob = ["test_*.py"]
