"""Snakemake and DVC agree on what is out of date, code and software included (smoke profile).

One git + DVC copy of the shared smoke build (conftest.smoke_dag), narrowed to one run of
each family (the absorbing prior, the autoregressive prior, GLF) and recorded by DVC
(`dvc commit -f`), shared by every check in file order. The checks:

1. after `dvc commit -f`, after `dvc checkout --force`, and in a fresh clone after
   `dvc pull`, both tools have nothing to do; a params edit in the clone is then seen by
   both (DVC lists the stage reading the key, Snakemake that stage and its downstream);
2. a comment and reformatting edit of a model makes nothing stale for Snakemake (DVC,
   which hashes the file's bytes, lists the chain until `dvc commit`); one function's body
   edited in models/priors/absorbing.py makes exactly the absorbing prior's training and
   everything downstream stale in both tools; models/priors/transformer.py adds the
   autoregressive chain; a changed package version makes every stage stale;
3. the escape hatch: after a real edit, `snakemake --touch` and `dvc commit` declare the
   results current, and the report's provenance then marks them as made by other code.

Every subprocess runs the copy's own code (PYTHONPATH=<copy>/src), so edits there count.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from code_edits import edit_function_body, reformat_without_changing_code
from conftest import copy_built, narrow_targets
from test_dvc import GIT_ID

pytestmark = pytest.mark.slow

SMOKE = "params/profiles/smoke.yaml"
TARGETS = ["absorbing_confidence", "autoregressive", "glf"]  # conftest.narrow_targets
PROFILES = [SMOKE]
CONFIG = ["--configfile", *PROFILES]
TWOSTAGE = ["twostage", *(a for f in PROFILES for a in ("--profile", f))]
DRY_RUN = ["snakemake", "-n", "-p", "--cores", "1", *CONFIG]
SHELL = re.compile(r"twostage(?: --profile \S+)* (\S+)(?: (\S+))? >")


def _env(tool_env: dict, root: Path) -> dict:
    return {**tool_env, "PYTHONPATH": str(root / "src")}


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 1200) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout + proc.stderr


def snakemake_jobs(root: Path, env: dict, dry_run: list[str] = DRY_RUN) -> set[str]:
    """The jobs `snakemake -n` would run, by DVC stage name ("Nothing to be done": none)."""
    out = _run(dry_run, root, env)
    found = set()
    for line in out.splitlines():
        match = SHELL.search(line) if "Shell command" in line else None
        if match:
            stage, name = match.group(1).replace("-", "_"), match.group(2)
            found.add(f"{stage}-{name}" if name else stage)
    assert found or "Nothing to be done" in out, out
    return found


def dvc_stale(root: Path, env: dict) -> set[str]:
    """The stages `dvc status` reports as changed."""
    return set(json.loads(_run(["dvc", "status", "--json"], root, env) or "{}"))


def dvc_downstream(root: Path, stages: set[str]) -> set[str]:
    """``stages`` and every stage of dvc.yaml that reads, directly or not, what they write."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]

    def outputs(stage: dict) -> set[str]:
        files = set(stage.get("outs", []))
        for key in ("metrics", "plots"):
            files |= {next(iter(entry)) for entry in stage.get(key, [])}
        return files

    found = set(stages)
    for name, stage in pipeline.items():  # dvc.yaml lists stages upstream first
        if any(set(stage.get("deps", [])) & outputs(pipeline[s]) for s in found):
            found.add(name)
    return found


def trainings(root: Path, prior: str) -> set[str]:
    """The train_prior stages of ``prior``: its own and its replicates' (the smoke profile
    replicates some runs; a replicate reads the same params key and runs the same code)."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    own = f"train_prior-{prior}"
    return {name for name in pipeline if name == own or name.startswith(f"{own}-seed")}


@pytest.fixture(scope="module")
def built(smoke_dag: Path, tmp_path_factory, tool_env: dict) -> Path:
    """A copy of the smoke DAG narrowed to this file's targets, recorded by DVC and committed.

    The shared smoke build (conftest.smoke_dag) holds every output of the narrower targets
    already; Snakemake reruns only what reads the targets list (the report).
    """
    base = tmp_path_factory.mktemp("staleness")
    root = copy_built(smoke_dag, base / "project")
    narrow_targets(root, TARGETS)
    env = _env(tool_env, root)
    _run(["git", "init", "-q"], root, env)
    _run([*TWOSTAGE, "dvc-yaml"], root, env)
    _run(["dvc", "remote", "modify", "local", "url", str(base / "remote")], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", *GIT_ID, "commit", "-qm", "smoke pipeline"], root, env)
    _run(["snakemake", "--cores", "2", *CONFIG], root, env, timeout=4 * 3600)
    _run(["dvc", "commit", "-f"], root, env)
    return root


def test_every_stage_records_the_versions_it_ran_with(built: Path):
    current = yaml.safe_load((built / "results/versions.yaml").read_text())
    pipeline = yaml.safe_load((built / "dvc.yaml").read_text())["stages"]
    for name, stage in pipeline.items():
        for entry in stage.get("metrics", []):
            made = json.loads((built / next(iter(entry))).read_text())["versions"]
            machine = made.pop("machine")  # the CPU it ran on (the report's header)
            assert made == {"code": current["code"][name], "software": current["software"]}
            assert machine["cpu"] and isinstance(machine["native_bf16"], bool)


def test_after_dvc_commit_both_have_nothing_to_do(built: Path, tool_env: dict):
    env = _env(tool_env, built)
    assert snakemake_jobs(built, env) == set()
    assert dvc_stale(built, env) == set()


def test_after_dvc_checkout_both_have_nothing_to_do(built: Path, tool_env: dict):
    env = _env(tool_env, built)
    _run(["dvc", "checkout", "--force"], built, env)
    assert snakemake_jobs(built, env) == set()
    assert dvc_stale(built, env) == set()


def test_a_profile_that_changes_no_value_reruns_nothing(built: Path, tool_env: dict):
    """Every rule's shell line names the profiles; a job's params, its code hash included,
    decide whether it reruns (the workflow profile's rerun-triggers)."""
    same = built.parent / "same-values.yaml"
    same.write_text("seed: 0\ncheckpoint_every: 200\n")  # params/config.yaml's own values
    assert snakemake_jobs(built, _env(tool_env, built), [*DRY_RUN, str(same)]) == set()


@pytest.fixture(scope="module")
def clone(built: Path, tool_env: dict) -> Path:
    """A fresh clone of the committed results, with the artifacts pulled from the remote."""
    env = _env(tool_env, built)
    _run(["git", "add", "-A"], built, env)
    _run(["git", *GIT_ID, "commit", "-qm", "smoke results"], built, env)
    _run(["dvc", "push"], built, env)
    clone = built.parent / "clone"
    _run(["git", "clone", "-q", str(built), str(clone)], built.parent, env)
    _run(["dvc", "pull"], clone, _env(tool_env, clone))
    return clone


def test_fresh_clone_after_dvc_pull_has_nothing_to_do(clone: Path, tool_env: dict):
    env = _env(tool_env, clone)
    assert dvc_stale(clone, env) == set()
    # Snakemake has no record of the pulled outputs: it takes them over once dvc.lock
    # confirms them, and then agrees.
    assert not (clone / ".snakemake").exists()
    assert snakemake_jobs(clone, env) == set()
    assert dvc_stale(clone, env) == set()


def test_a_params_edit_in_the_clone_is_seen_by_both(clone: Path, tool_env: dict):
    env = _env(tool_env, clone)
    params = clone / "params/priors.yaml"
    original = params.read_text()
    entry = original.index("absorbing_mnist:")
    lr = original.index("lr: ", entry)
    line_end = original.index("\n", lr)
    params.write_text(original[:lr] + "lr: 0.000123" + original[line_end:])
    try:
        snakemake = snakemake_jobs(clone, env)
        dvc = dvc_stale(clone, env)
    finally:
        params.write_text(original)
    assert dvc == trainings(clone, "absorbing_mnist")  # the stages that read the key
    assert snakemake == dvc_downstream(clone, dvc)  # what `dvc repro` reruns after it
    assert snakemake_jobs(clone, env) == set() and dvc_stale(clone, env) == set()


@pytest.fixture
def absorbing(built: Path):
    """models/priors/absorbing.py of the built copy, restored after the test."""
    path = built / "src/twostage/models/priors/absorbing.py"
    original = path.read_text()
    yield path
    path.write_text(original)


def test_comments_and_reformatting_make_nothing_stale_for_snakemake(built, absorbing, tool_env):
    env = _env(tool_env, built)
    original = absorbing.read_text()
    reformat_without_changing_code(absorbing)
    assert snakemake_jobs(built, env) == set()
    # DVC hashes the file's bytes: it lists the chain until `dvc commit` records them.
    assert dvc_stale(built, env) == dvc_downstream(built, trainings(built, "absorbing_mnist"))
    _run(["dvc", "commit", "-f"], built, env)
    assert dvc_stale(built, env) == set()
    assert snakemake_jobs(built, env) == set()
    absorbing.write_text(original)  # as dvc.lock had it before, for the next checks
    _run(["dvc", "commit", "-f"], built, env)


def test_editing_the_absorbing_prior_stales_its_chain_in_both_tools(built, absorbing, tool_env):
    env = _env(tool_env, built)
    edit_function_body(absorbing)
    chain = dvc_downstream(built, trainings(built, "absorbing_mnist"))
    assert "train_prior-autoregressive_mnist" not in chain and "report" in chain
    assert snakemake_jobs(built, env) == chain
    assert dvc_stale(built, env) == chain

    transformer = built / "src/twostage/models/priors/transformer.py"
    original = transformer.read_text()
    edit_function_body(transformer)
    try:
        both = dvc_downstream(
            built, trainings(built, "absorbing_mnist") | trainings(built, "autoregressive_mnist")
        )
        assert snakemake_jobs(built, env) == both
        assert dvc_stale(built, env) == both
    finally:
        transformer.write_text(original)


def test_a_changed_package_version_makes_every_stage_stale(built, tool_env, tmp_path):
    dist = tmp_path / "numpy-99.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 99.0\n")
    env = _env(tool_env, built)
    # pip's record of the installed numpy is the first one on the path: this one
    upgraded = {**env, "PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}
    everything = set(yaml.safe_load((built / "dvc.yaml").read_text())["stages"])
    assert snakemake_jobs(built, upgraded) == everything
    assert dvc_stale(built, upgraded) == everything
    assert snakemake_jobs(built, env) == set()  # the real versions again
    assert dvc_stale(built, env) == set()


def test_touch_and_dvc_commit_declare_a_refactor_and_the_report_says_so(built, absorbing, tool_env):
    env = _env(tool_env, built)
    edit_function_body(absorbing)
    chain = dvc_downstream(built, trainings(built, "absorbing_mnist"))
    _run(["snakemake", "--touch", "--cores", "1", *CONFIG], built, env)
    assert snakemake_jobs(built, env) == set()
    _run([*TWOSTAGE, "versions"], built, env)
    _run(["dvc", "commit", "-f"], built, env)
    assert dvc_stale(built, env) == set()

    # The report rebuilt alone: its provenance marks what the old code made.
    _run(["snakemake", "--forcerun", "report", "--cores", "1", *CONFIG], built, env)
    report = (built / "results/report/report.md").read_text()
    pipeline = yaml.safe_load((built / "dvc.yaml").read_text())["stages"]
    for name, stage in pipeline.items():
        for entry in stage.get("metrics", []):
            path = next(iter(entry))
            line = next(x for x in report.splitlines() if x.strip().startswith(f"{path}: "))
            assert line.strip() == f"{path}: " + (
                "NOT CURRENT (other code)" if name in chain else "current"
            )
