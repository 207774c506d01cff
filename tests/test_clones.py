"""Two clones sharing one venv each run, and hash, their own code.

scripts/ensure_venv.sh keeps one venv per requirement hash for the whole machine. Here
two copies of the project (clones A and B) get one venv root; each calls ensure_venv.sh
(as run.sh and test.sh do), clone B last. Clone A's code is then edited, and in each
clone the `twostage` command, ``python -c "import twostage"`` and Snakemake reading the
Snakefile must run that clone's code: A's edit runs in A and changes A's code hashes,
and B runs and hashes the unedited code. A PYTHONPATH set by hand still chooses the code,
and outside any clone `twostage` says so instead of running some clone's code.

The venv is made cheap: the copies' requirement files list only pip (present in a
fresh venv, so nothing is downloaded), and the test then gives the venv this test's own
site-packages as a plain path for the dependencies (torch, numpy, Snakemake...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_IGNORE, SMOKE

from twostage.config import load_params
from twostage.provenance import versions

# A module-level line that every twostage command and the Snakefile run; config.py is
# code of every job.
EDIT = '\nimport sys\n\nprint("running the code of clone A", file=sys.stderr)\n'
MARK = "running the code of clone A"


def _clone(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, ignore=PROJECT_IGNORE)
    (dest / "requirements.txt").write_text("pip\n")
    (dest / "requirements-dev.txt").write_text("pip\n")
    return dest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No PYTHONPATH (it would choose the code itself); pip offline, without the
    machine's config; the venvs under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        TWOSTAGE_VENV_ROOT=str(tmp_path / "venvs"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        DVC_NO_ANALYTICS="1",
    )
    return env


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _ensure_venv(clone: Path, env: dict) -> Path:
    return Path(_run(["bash", "scripts/ensure_venv.sh"], clone, env).stdout.strip())


def _code_hashes(clone: Path) -> dict[str, str]:
    return yaml.safe_load((clone / "results/versions.yaml").read_text())["code"]


def test_each_clone_runs_and_hashes_its_own_code(tmp_path: Path, repo: Path, env: dict):
    a, b = _clone(repo, tmp_path / "A"), _clone(repo, tmp_path / "B")
    venv = _ensure_venv(a, env)
    # The dependencies this test runs with stand in for the venv's install (a plain path:
    # its .pth files, e.g. an editable install of another checkout, are not read).
    site = Path(
        subprocess.check_output(
            [
                venv / "bin/python",
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            text=True,
        ).strip()
    )
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert _ensure_venv(b, env) == venv, "the two clones should share one venv"

    edited = a / "src/twostage/config.py"
    edited.write_text(edited.read_text() + EDIT)
    run_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    hashes, ran = {}, {}
    for clone in (a, b):
        imported = _run(
            ["python", "-c", "import twostage; print(twostage.__file__)"], clone, run_env
        )
        assert imported.stdout.strip() == str(clone / "src/twostage/__init__.py")
        # the command DVC's stages and Snakemake's rules run
        proc = _run(["twostage", "--profile", SMOKE, "versions"], clone, run_env)
        hashes[clone.name], ran[clone.name] = _code_hashes(clone), MARK in proc.stderr
        # Snakemake imports twostage when it reads the Snakefile, and refreshes the hashes
        (clone / "results/versions.yaml").unlink()
        proc = _run(
            ["python", "-m", "snakemake", "--list-rules", "--configfile", SMOKE], clone, run_env
        )
        assert _code_hashes(clone) == hashes[clone.name], (
            f"Snakemake in {clone.name} hashed other code"
        )
        assert (MARK in proc.stderr) == ran[clone.name]

    assert ran == {"A": True, "B": False}, f"which clone ran clone A's edit: {ran}"
    unedited = versions.code_hashes(load_params([SMOKE], root=repo))  # this checkout's code
    assert hashes["B"] == unedited, "clone B hashed other code than its own"
    assert hashes["A"].keys() == unedited.keys()
    assert all(hashes["A"][job] != unedited[job] for job in unedited), (
        "clone A's edit of config.py (code of every job) is not in A's code hashes"
    )

    chosen = {**run_env, "PYTHONPATH": str(a / "src")}  # set by hand: it comes first
    imported = _run(["python", "-c", "import twostage; print(twostage.__file__)"], b, chosen)
    assert imported.stdout.strip() == str(a / "src/twostage/__init__.py")

    # outside any clone the command names what is wrong instead of running some clone
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proc = subprocess.run(
        ["twostage", "validate"], cwd=outside, env=run_env, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "not inside a clone of the project" in proc.stderr, proc.stderr
