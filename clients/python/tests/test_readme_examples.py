"""The API guide's examples are clients/python/examples/*.py, verbatim, and each one runs against the stand-in."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from conftest import FUNCTION_NAME
from standin import StandIn

CLIENT_DIR = Path(__file__).resolve().parent.parent
EXAMPLES = CLIENT_DIR / "examples"
API_GUIDE = CLIENT_DIR.parent.parent / "docs" / "api.md"
SECTION = "## Calling the API with SigV4"
CLIENT_README = CLIENT_DIR / "README.md"
# Each example's last printed lines, as the fixture model ranks them (the cross-encoder passage first).
EXPECTED_LAST_LINE = {
    "client.py": "[1, 0]",
    "langchain_retriever.py": "Bananas are yellow.",
    "llamaindex_postprocessor.py": "Bananas are yellow.",
    "haystack_pipeline.py": "A cross-encoder scores query and passage.",
}


def api_guide_python_blocks() -> list[str]:
    text = API_GUIDE.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_api_guide_section_shows_every_example_verbatim() -> None:
    blocks = api_guide_python_blocks()
    examples = sorted(EXAMPLES.glob("*.py"))

    assert {path.name for path in examples} == set(EXPECTED_LAST_LINE)
    for path in examples:
        assert path.read_text(encoding="utf-8") in blocks, (
            f"docs/api.md {SECTION!r} lacks {path.name} verbatim"
        )


def client_readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", CLIENT_README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_client_readme_shows_the_client_example_verbatim() -> None:
    blocks = client_readme_python_blocks()

    assert blocks[0] == (EXAMPLES / "client.py").read_text(encoding="utf-8")
    assert len(blocks) == 2  # and the local-endpoint example, run by test_unsigned.py


@pytest.mark.parametrize("name", sorted(EXPECTED_LAST_LINE))
def test_each_example_runs(
    name: str, aws: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RERANKER_URL", aws.url)
    monkeypatch.setenv("RERANKER_FUNCTION", FUNCTION_NAME)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", aws.url)  # botocore's own endpoint override

    runpy.run_path(str(EXAMPLES / name), run_name="__main__")

    printed = capsys.readouterr().out.strip().splitlines()
    assert printed and printed[-1].endswith(EXPECTED_LAST_LINE[name])
    assert aws.received and all(received.status == 200 for received in aws.received)
