"""The settings tables of docs/configuration.md, generated from their one declaration (handler/reranker/config.py).

    python -m tools.settings_table            print the tables
    python -m tools.settings_table --write    rewrite them in docs/configuration.md
    python -m tools.settings_table --check    exit 1 if docs/configuration.md differs from the declaration

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``; the prose around
the markers is written by hand and kept as it is.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO / "handler"
CONFIGURATION_DOC = REPO / "docs" / "configuration.md"
BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S
)


def _config() -> Any:
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    from reranker import config

    return config


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def shown_default(item: Any) -> str:
    """A declared default as the docs show it."""
    if item.shown_default is not None:
        return str(item.shown_default)
    default = item.default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, int):
        return str(default)
    return f"`{default}`"


SHOWN_KIND = {"boolean": "true or false (also 1/0, yes/no, on/off)", "path": "a path", "text": "text"}


def shown_allowed(item: Any) -> str:
    """What a setting accepts, as the docs show it."""
    if item.shown_allowed is not None:
        return str(item.shown_allowed)
    if item.kind == "choice":
        return ", ".join(f"`{choice}`" for choice in item.choices)
    if item.kind not in ("integer", "number"):
        return SHOWN_KIND[item.kind]
    minimum = f"{item.minimum:g}" if item.kind == "number" else str(item.minimum)
    if item.maximum is None:
        return f"{item.kind} >= {minimum}"
    maximum = f"{item.maximum:g}" if item.kind == "number" else str(item.maximum)
    return f"{item.kind} from {minimum} to {maximum}"


def settings_table() -> str:
    config = _config()
    rows = [
        (f"`{item.variable}`", shown_default(item), shown_allowed(item), item.doc)
        for item in config.DECLARED_SETTINGS
    ]
    return _table(("variable", "default", "accepts", "meaning"), rows)


def platform_table() -> str:
    config = _config()
    rows = [(f"`{item.variable}`", item.shown_default, item.doc) for item in config.PLATFORM_VARIABLES]
    return _table(("variable", "default", "meaning"), rows)


TABLES: dict[str, Callable[[], str]] = {"settings": settings_table, "platform-variables": platform_table}


def regenerate(text: str) -> str:
    """``text`` with every generated block rewritten from the declaration; unknown block names are an error."""
    names = [match["name"] for match in BLOCK.finditer(text)]
    unknown = sorted(set(names) - set(TABLES))
    missing = sorted(set(TABLES) - set(names))
    if unknown or missing:
        raise ValueError(f"generated blocks: unknown {unknown}, missing {missing}")
    return BLOCK.sub(lambda match: match[1] + "\n" + TABLES[match["name"]]() + "\n" + match[4], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.settings_table", description=__doc__.split("\n")[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in docs/configuration.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is out of date")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for name, table in TABLES.items():
            print(f"<!-- generated: {name} -->\n\n{table()}")
        return 0
    current = CONFIGURATION_DOC.read_text(encoding="utf-8")
    wanted = regenerate(current)
    if args.check:
        if wanted != current:
            print(
                f"{CONFIGURATION_DOC.relative_to(REPO)} is out of date: python -m tools.settings_table --write"
            )
            return 1
        return 0
    if wanted != current:
        CONFIGURATION_DOC.write_text(wanted, encoding="utf-8")
        print(f"rewrote {CONFIGURATION_DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
