"""./dev bench names itself, and its outputs without a FILE land in a git-ignored folder."""

from __future__ import annotations

import subprocess

import pytest

from bench.run import parse_args
from tests.models import REPO


def test_bench_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert capsys.readouterr().out.startswith("usage: ./dev bench ")


def test_plot_and_json_without_a_file_go_under_a_git_ignored_folder() -> None:
    args = parse_args(["--plot", "--json"])
    for path in (args.plot, args.json):
        assert path.parent == REPO / "bench" / "out"
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", str(path)], cwd=REPO, check=False
        )
        assert ignored.returncode == 0, f"{path} is not git-ignored"
    assert parse_args([]).plot is None and parse_args([]).json is None
    assert parse_args(["--plot", "elsewhere.png"]).plot.name == "elsewhere.png"
