"""Snakemake and DVC, each on its own, agree with the other on the whole smoke DAG.

Both checks work in a git + DVC copy of the session's smoke build (conftest.smoke_dag),
recorded by DVC with `dvc commit -f`:

1. DVC sees a code edit with no Snakemake or twostage call before it: one function's
   body edited in models/priors/absorbing.py, and `dvc status` lists exactly the absorbing
   prior's training and everything downstream of it, as `snakemake -n` then does; and a
   changed pin in requirements.txt makes every stage stale;
2. switching commits: build, commit; change `runs.rae_gmm.temperature` and rebuild with
   Snakemake, commit; `git checkout HEAD~1` + `dvc checkout` restores the first build and
   then both tools have nothing to do, and so after switching back. With the newer value
   put back in the params (not committed), both rebuild the same jobs. (`dvc exp apply`
   of an experiment is test_dvc.py's.)

Every subprocess runs the copy's own code (PYTHONPATH=<copy>/src), so edits there count.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import test_staleness as staleness
import yaml
from code_edits import edit_function_body
from conftest import SMOKE, copy_built
from test_staleness import dvc_downstream, dvc_stale, trainings

pytestmark = pytest.mark.slow

CONFIG = ["--configfile", SMOKE]
RUN = "rae_gmm"  # a GMM sampler: its rerun costs seconds; the smoke profile keeps its value


def _run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout + proc.stderr


def snakemake_jobs(root: Path, env: dict) -> set[str]:
    """The jobs `snakemake -n` would run on the whole smoke DAG, by DVC stage name."""
    return staleness.snakemake_jobs(root, env, ["snakemake", "-n", "-p", "--cores", "1", *CONFIG])


def _commit(root: Path, env: dict, message: str) -> None:
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", message], root, env)


@pytest.fixture(scope="module")
def committed(smoke_dag: Path, tmp_path_factory, tool_env: dict) -> tuple[Path, dict]:
    """A copy of the smoke build under git, its outputs recorded by DVC and committed."""
    root = copy_built(smoke_dag, tmp_path_factory.mktemp("commit-switch") / "project")
    env = {**tool_env, "PYTHONPATH": str(root / "src")}
    _run(["git", "init", "-q"], root, env)
    for key, value in (("user.name", "test"), ("user.email", "test@example.com")):
        _run(["git", "config", key, value], root, env)  # `dvc exp run` commits too
    _run(["twostage", "--profile", SMOKE, "dvc-yaml"], root, env)
    _run(["dvc", "commit", "-f"], root, env)
    _commit(root, env, "smoke build")
    return root, env


@pytest.fixture
def recorded(committed: tuple[Path, dict]) -> tuple[Path, dict]:
    """The committed copy as committed: a test's edits to tracked files (code, pins, and the
    versions file a dry run rewrites) undone. Outputs are never rebuilt but by the last test."""
    root, env = committed
    _run(["git", "checkout", "-q", "--", "."], root, env)
    _run(["git", "clean", "-fdq"], root, env)
    return root, env


def test_dvc_alone_sees_a_code_edit(recorded):
    root, env = recorded
    assert dvc_stale(root, env) == set()
    edit_function_body(root / "src/twostage/models/priors/absorbing.py")
    chain = dvc_downstream(root, trainings(root, "absorbing_mnist"))
    assert "train_prior-autoregressive_mnist" not in chain and "report" in chain
    assert dvc_stale(root, env) == chain  # no snakemake or twostage call before it
    assert snakemake_jobs(root, env) == chain


def test_dvc_alone_sees_a_package_change(recorded):
    """A changed pin (how packages change here: the venv is built from the pins) makes
    every stage stale for `dvc status`, with nothing run before it."""
    root, env = recorded
    assert dvc_stale(root, env) == set()
    pins = root / "requirements.txt"
    text = pins.read_text()
    assert "lpips==0.1.4" in text
    pins.write_text(text.replace("lpips==0.1.4", "lpips==0.1.3"))
    stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert dvc_stale(root, env) == stages


def _set_temperature(params: Path, value: str) -> None:
    text = params.read_text()
    entry = text.index(f"\n  {RUN}:\n")
    start = text.index("temperature: ", entry)
    end = text.index("\n", start)
    params.write_text(text[:start] + f"temperature: {value}" + text[end:])
    assert yaml.safe_load(params.read_text())["runs"][RUN]["temperature"] == float(value)


def test_both_agree_after_switching_commits(recorded):
    root, env = recorded
    params = root / "params/evaluation.yaml"
    samples = root / f"results/samples/{RUN}/images.npy"  # restored by DVC
    assert snakemake_jobs(root, env) == set() and dvc_stale(root, env) == set()
    first = samples.read_bytes()

    _set_temperature(params, "0.9")
    rerun = snakemake_jobs(root, env)
    assert f"sample-{RUN}" in rerun and "train_prior-gmm_rae_mnist" not in rerun
    _run(["snakemake", "--cores", "2", *CONFIG], root, env)
    _run(["dvc", "commit", "-f"], root, env)
    _commit(root, env, f"{RUN} at temperature 0.9")
    second = samples.read_bytes()
    assert second != first

    _run(["git", "checkout", "-q", "HEAD~1"], root, env)
    _run(["dvc", "checkout"], root, env)
    assert samples.read_bytes() == first
    assert dvc_stale(root, env) == set()
    assert snakemake_jobs(root, env) == set()  # the records were of the 0.9 build
    assert dvc_stale(root, env) == set()

    # The newer value in the params of the older build: both rebuild the same jobs.
    _set_temperature(params, "0.9")
    stale = dvc_stale(root, env)
    assert f"sample-{RUN}" in stale
    assert snakemake_jobs(root, env) == dvc_downstream(root, stale) == rerun
    _run(["git", "checkout", "-q", "--", "params/evaluation.yaml"], root, env)

    # And back to the newer build.
    _run(["git", "checkout", "-q", "-"], root, env)
    _run(["dvc", "checkout"], root, env)
    assert samples.read_bytes() == second
    assert snakemake_jobs(root, env) == set()
    assert dvc_stale(root, env) == set()
    # Snakemake took the outputs over once: its next run has nothing to take over.
    again = _run(["snakemake", "-n", "--cores", "1", *CONFIG], root, env)
    assert "Snakemake record" not in again and "Nothing to be done" in again
