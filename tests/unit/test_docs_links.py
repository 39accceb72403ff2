"""README.md and docs/*.md: every relative link leads to a file that exists and to a heading that exists in it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
README_MAX_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets and parentheses are not links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(text):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(prose(page.read_text(encoding="utf-8")))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)  # http:, https:, mailto: ...
    ]


def test_the_pages_are_found() -> None:
    assert REPO / "README.md" in PAGES
    assert len(PAGES) > 5


def test_the_slug_rule_matches_githubs() -> None:
    assert github_slug("One vCPU (1769 MB)") == "one-vcpu-1769-mb"
    assert (
        github_slug("Does reranking pay on your data? (`./dev eval`)")
        == "does-reranking-pay-on-your-data-dev-eval"
    )
    assert github_slug("503 ModelUnavailable on every request") == "503-modelunavailable-on-every-request"
    assert github_slug("DeadlineExceeded, or unscored passages") == "deadlineexceeded-or-unscored-passages"


def test_links_in_code_are_not_links() -> None:
    text = "see [a](b.md) and `[c](d.md)`\n```\n[e](f.md)\n```\n"
    assert _LINK.findall(prose(text)) == ["b.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        destination = (page.parent / unquote(file_part)).resolve() if file_part else page
        name = (
            destination.relative_to(REPO).as_posix() if destination.is_relative_to(REPO) else str(destination)
        )
        if not destination.exists():
            broken.append(f"{target}: {name} does not exist")
            continue
        if fragment and destination.suffix == ".md" and unquote(fragment) not in anchors(destination):
            broken.append(f"{target}: no heading #{fragment} in {name}")
    assert not broken, f"{page.relative_to(REPO)}:\n" + "\n".join(broken)


def test_the_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"
