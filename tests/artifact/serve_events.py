"""Serve every events/*.json file from a built function package, in a fresh interpreter: the child of
test_built_artifact.py, run as `python3.13 -I -S serve_events.py ARTIFACT_DIR REPO OUT.json`.

`-I -S`: no site-packages, no PYTHONPATH, no user site; sys.path is the package directory (Lambda's
/var/task), then the repository root for tests.events (whose own imports are reranker and the standard
library), then the standard library. Writes each event's outcome, every loaded module's file and every
shared library mapped into the process, for the parent to judge.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

artifact, repo, out = (Path(argument) for argument in sys.argv[1:4])
sys.path[:0] = [str(artifact), str(repo)]

import reranker.app as app  # noqa: E402
from tests.events import EXPECTED, load_event, run  # noqa: E402

outcomes = {}
for name in sorted(EXPECTED):
    outcome = run(app, load_event(name))
    results = outcome.body.get("results") if isinstance(outcome.body, dict) else None
    outcomes[name] = {
        "status": outcome.status,
        "error_type": outcome.error_type,
        "message": outcome.message if outcome.status >= 400 else None,
        "results": len(results) if isinstance(results, list) else None,
        "model": outcome.body.get("model") if isinstance(outcome.body, dict) else None,
    }
modules = sorted(
    {
        str(getattr(module, "__file__", None))
        for module in list(sys.modules.values())
        if getattr(module, "__file__", None)
    }
)
with open("/proc/self/maps", encoding="ascii") as maps:
    libraries = sorted({line.split()[-1] for line in maps if ".so" in line.split()[-1]})
out.write_text(json.dumps({"outcomes": outcomes, "modules": modules, "libraries": libraries}, indent=1))
