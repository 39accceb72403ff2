"""Write (or --check) handler/reranker/openapi.json: the hand-written parts plus the contract's schemas.

The component schemas come from reranker.contract, the declarations the request parsers check with; everything
else (paths, operations, descriptions, examples, error responses, security) is written by hand in
tools/openapi_base.json. The function serves the committed file (read on the first GET /openapi.json), and
tests/unit/test_openapi_generated.py fails when it differs from what this tool generates:

    python -m tools.openapi --write     # after changing the contract or the base
    python -m tools.openapi --check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO / "handler"
BASE = Path(__file__).with_name("openapi_base.json")
TARGET = HANDLER_DIR / "reranker" / "openapi.json"


def generate() -> dict[str, Any]:
    """The OpenAPI document: the base with components.schemas rendered from the contract at default limits."""
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    from reranker.contract import COMPONENTS
    from reranker.schemas import Limits

    document: dict[str, Any] = json.loads(BASE.read_text(encoding="utf-8"))
    if "schemas" in document.get("components", {}):
        raise ValueError(
            f"{BASE.name} must not hold components.schemas: they are generated from the contract"
        )
    limits = Limits()  # the defaults the document states
    schemas = {component.name: component.json_schema(limits) for component in COMPONENTS}
    document["components"] = {"schemas": schemas, **document.get("components", {})}
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help=f"write {TARGET.relative_to(REPO)}")
    action.add_argument("--check", action="store_true", help="exit 1 if the committed file is not current")
    args = parser.parse_args(argv)
    text = render(generate())
    if args.write:
        TARGET.write_text(text, encoding="utf-8")
        return 0
    if TARGET.read_text(encoding="utf-8") != text:
        print(
            f"{TARGET.relative_to(REPO)} is not current: run python -m tools.openapi --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
