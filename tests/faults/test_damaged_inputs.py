"""Every damaged input gets one clear line: the file, the stage that makes it and the
command that rebuilds it, exit status 2 and no traceback (``--debug`` shows it).

The cases and their exact lines are the matrix in damage.py; README.md here shows it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from damage import CASES, DETAIL, PROFILE, SAMPLES, Case, build_project, table, truncate

from twostage import cli

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def built(tmp_path_factory, repo: Path) -> Path:
    """One project with every artifact of the matrix, built once and copied per case."""
    root = tmp_path_factory.mktemp("built")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        build_project(root, repo)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(built, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def _one_error_line(capsys, *args: str) -> str:
    capsys.readouterr()
    assert cli.main(["--profile", PROFILE, *args]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("twostage: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0].removeprefix("twostage: error: ")


def _pattern(expected: str) -> str:
    """The expected line as a regex: the parser's own words (…) match anything in brackets."""
    return "^" + r"\(.+\)".join(re.escape(part) for part in expected.split(DETAIL)) + "$"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_input_gives_one_line(case: Case, project: Path, capsys):
    case.apply(project / case.file)
    line = _one_error_line(capsys, *case.command)
    assert re.match(_pattern(case.expected), line), f"\n got: {line}\nwant: {case.expected}"


def test_debug_shows_the_traceback(project: Path):
    truncate(project / SAMPLES)
    with pytest.raises(ValueError, match="content differs from the sha256"):
        cli.main(["--profile", PROFILE, "--debug", "evaluate", "autoregressive"])


def test_the_readme_table_is_the_matrix():
    readme = (HERE / "README.md").read_text()
    assert table() in readme, "regenerate the table: python tests/faults/damage.py"


def test_every_kind_meets_every_damage():
    """Each artifact kind is tested damaged in content (truncated or garbage) and in form."""
    kinds: dict[str, set[str]] = {}
    for c in CASES:
        kinds.setdefault(c.kind, set()).add(c.damage)
    for kind, damages in kinds.items():
        assert {"truncated", "garbage"} & damages, kind
        assert len(damages) >= 2, kind
