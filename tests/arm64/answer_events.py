"""Answer every events/*.json file with the function package: run by tests/arm64 as
`python3.13 -I -S answer_events.py PACKAGE_DIR REPO OUT.json`, under emulation for the arm64 package and with
the host's interpreter for the x86_64 reference.

sys.path is the package directory (Lambda's /var/task), then the repository root for tests.events (whose own
imports are reranker and the standard library), then the standard library. Writes each event's whole answer,
every loaded module's file and every shared library mapped into the process, for the parent to judge.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

package, repo, out = (Path(argument) for argument in sys.argv[1:4])
sys.path[:0] = [str(package), str(repo)]

import reranker.app as app  # noqa: E402
from tests.events import event_files, load_event, run  # noqa: E402

answers = {}
for name in event_files():
    outcome = run(app, load_event(name))
    answers[name] = {
        "status": outcome.status,
        "error_type": outcome.error_type,
        "message": outcome.message if outcome.status >= 400 else None,
        "body": outcome.body,
        "headers": outcome.headers,
    }
modules = sorted(
    {str(module.__file__) for module in list(sys.modules.values()) if getattr(module, "__file__", None)}
)
with open("/proc/self/maps", encoding="ascii") as maps:
    libraries = sorted({line.split()[-1] for line in maps if ".so" in line.split()[-1]})
report = {"machine": platform.machine(), "answers": answers, "modules": modules, "libraries": libraries}
out.write_text(json.dumps(report, indent=1), encoding="utf-8")
