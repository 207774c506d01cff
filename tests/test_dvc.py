"""DVC tracking end to end on the smoke profile, sharing one `dvc repro` between the checks.

A git-init'd temporary copy of the project runs the smoke pipeline with DVC (narrowed to
tests/dvc_targets.yaml's targets, which still run every stage: DVC runs one stage at a
time, and the whole smoke DAG is test_end_to_end's), commits
dvc.lock and the metrics/plots files, and pushes to a local remote. Then: a fresh
clone pulls and neither tool wants to rebuild; metrics and plots are in git and
`dvc plots show` renders them; `dvc exp run -S` on a sampling param reruns only
sampling, evaluation and report, `dvc metrics diff` / `dvc exp show` show the
change, and `dvc exp apply` after the workspace is put back restores it for both tools;
the real report renders in a browser and `snakemake --report` archives it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_end_to_end import check_artifacts

from twostage.config import load_params
from twostage.paths import VERSIONS
from twostage.plan import jobs

pytestmark = pytest.mark.slow

SMOKE = "params/profiles/smoke.yaml"
# The smoke profile narrowed to fewer targets (see the file): its stages are what DVC runs.
TARGETS = "tests/dvc_targets.yaml"
PROFILES = (SMOKE, TARGETS)
CONFIG = ["--configfile", *PROFILES]
GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
RUN = "absorbing_confidence"  # a run of evaluation.yaml the smoke profile does not override


def _run(args: list[str], cwd: Path, env: dict, check: bool = True, timeout: int = 1200) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc.stdout + proc.stderr


def _copy_tracked_files(repo: Path, dest: Path, env: dict) -> None:
    """The project's files, tracked or new (never results/ or caches: git ignores those)."""
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], repo, env
    )
    listed = listed.split("\0")
    for rel in filter(None, listed):
        if (repo / rel).is_file() and not rel.startswith("results/"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, dest / rel)


@pytest.fixture(scope="module")
def project(tmp_path_factory, repo: Path, tool_env: dict) -> Path:
    """The smoke pipeline run by `dvc repro`, committed, and pushed to a local remote."""
    base = tmp_path_factory.mktemp("dvc")
    root = base / "project"
    _copy_tracked_files(repo, root, tool_env)
    _run(["git", "init", "-q"], root, tool_env)
    _run(["twostage", "--profile", SMOKE, "--profile", TARGETS, "dvc-yaml"], root, tool_env)
    # The committed default remote lives under ~/.cache; the test's stays in its tmp dir.
    _run(["dvc", "remote", "modify", "local", "url", str(base / "remote")], root, tool_env)
    _run(["git", "add", "-A"], root, tool_env)
    _run(["git", *GIT_ID, "commit", "-qm", "smoke pipeline"], root, tool_env)
    _run(["dvc", "repro"], root, tool_env, timeout=4 * 3600)  # minutes; room for a busy machine
    _run(["git", "add", "-A"], root, tool_env)
    _run(["git", *GIT_ID, "commit", "-qm", "smoke results"], root, tool_env)
    _run(["dvc", "push"], root, tool_env)
    return root


def _declared(root: Path, kind: str) -> set[str]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
    return {next(iter(entry)) for s in stages for entry in s.get(kind, [])}


def test_dvc_repro_builds_every_artifact_and_ends_up_to_date(project: Path, tool_env: dict):
    # First in this module: the later tests change the workspace (exp run, pulls).
    check_artifacts(project, PROFILES)
    assert "up to date" in _run(["dvc", "status"], project, tool_env)
    # The narrowed target set still runs every stage the whole smoke DAG has.
    every = {job.stage for job in jobs(load_params([SMOKE], root=project))}
    ran = {job.stage for job in jobs(load_params(list(PROFILES), root=project))}
    assert ran == every, every - ran


def test_metrics_and_plots_are_committed_and_nothing_else(project: Path, tool_env: dict):
    in_git = set(_run(["git", "ls-files", "results"], project, tool_env).split())
    # and the code and software hashes DVC reads as params (docs/staleness.md)
    expected = _declared(project, "metrics") | _declared(project, "plots") | {VERSIONS}
    assert in_git == expected
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, tool_env))
    assert shown, "dvc metrics show found no metrics"


def test_dvc_plots_show_renders_curves_and_the_steps_sweep(project: Path, tool_env: dict):
    out = project.parent / "plots"
    _run(["dvc", "plots", "show", "-o", str(out)], project, tool_env)
    page = (out / "index.html").read_text()
    for plot in _declared(project, "plots"):
        # DVC's element id for a plot: its path with "/" and "." as "_" ("-" is kept)
        assert plot.replace("/", "_").replace(".", "_") in page, plot


def test_fresh_clone_pull_rebuilds_nothing(project: Path, tool_env: dict):
    clone = project.parent / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], project.parent, tool_env)
    # pull.sh: dvc pull, check dvc status, then align mtimes for Snakemake.
    _run(["bash", "scripts/pull.sh", *CONFIG], clone, tool_env)
    assert "up to date" in _run(["dvc", "status"], clone, tool_env)
    dry = _run(["snakemake", "-n", "--cores", "1", *CONFIG], clone, tool_env)
    assert "Nothing to be done" in dry
    # Snakemake's own report archive, from pulled artifacts.
    _run(
        ["snakemake", "--cores", "1", *CONFIG, "--report", "report.zip"],
        clone,
        tool_env,
    )
    assert (clone / "report.zip").stat().st_size > 0


def test_pull_refuses_to_touch_a_workspace_that_differs(project: Path, tool_env: dict):
    clone = project.parent / "clone-edited"
    _run(["git", "clone", "-q", str(project), str(clone)], project.parent, tool_env)
    params = clone / "params/evaluation.yaml"
    params.write_text(params.read_text().replace("nearest_k: 3", "nearest_k: 4"))
    out = _run(["bash", "scripts/pull.sh", *CONFIG], clone, tool_env, check=False)
    assert "differs from dvc.lock" in out
    assert not (clone / ".snakemake").exists()  # snakemake --touch never ran


def test_real_report_renders_in_a_browser(project: Path, render_in_browser):
    seen = render_in_browser(project / "results/report/index.html", width=1280)
    assert seen["images"] > 10 and seen["broken"] == [] and seen["tables"] >= 3
    # The headline tables fit a 1 280 px window: no sideways scrolling.
    assert seen["headlines"] and all(0 < t["scroll"] <= t["client"] for t in seen["headlines"])


def test_exp_run_on_a_sampling_param_reruns_only_sampling_evaluation_report(
    project: Path, tool_env: dict
):
    metrics = f"results/eval/{RUN}/metrics.json"
    before = json.loads((project / metrics).read_text())["fd_classifier"]
    key = f"params/evaluation.yaml:runs.{RUN}.temperature=0.5"
    out = _run(["dvc", "exp", "run", "-n", "t05", "-S", key], project, tool_env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # The run's own downstream (scores and its nearest-neighbour check) and its replicates'
    # sampling and scoring (the smoke profile replicates it: seeds.py), nothing upstream.
    replicates = [r for r, _ in load_params(list(PROFILES), root=project).replicates_of(RUN)[1:]]
    assert replicates
    redone = {f"{stage}-{r}" for r in replicates for stage in ("sample", "evaluate")}
    assert ran == {f"sample-{RUN}", f"evaluate-{RUN}", f"neighbours-{RUN}", "report", *redone}

    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project, tool_env))
    change = diff[metrics]["fd_classifier"]
    assert change["old"] == before and change["new"] != before

    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project, tool_env))
    experiments = [
        rev["data"]
        for commit in shown
        for exp in commit.get("experiments") or []
        for rev in exp["revs"]
    ]
    assert any(e["metrics"][metrics]["data"]["fd_classifier"] == change["new"] for e in experiments)

    # The workspace put back, then the experiment applied: its outputs return, and both
    # tools have nothing to do (Snakemake takes over what DVC restored).
    samples = project / f"results/samples/{RUN}/images.npy"
    made = samples.read_bytes()
    _run(["git", "checkout", "-q", "--", "."], project, tool_env)
    _run(["dvc", "checkout"], project, tool_env)
    assert samples.read_bytes() != made
    _run(["dvc", "exp", "apply", "t05"], project, tool_env)
    assert samples.read_bytes() == made
    assert "up to date" in _run(["dvc", "status"], project, tool_env)
    dry = _run(["snakemake", "-n", "--cores", "1", *CONFIG], project, tool_env)
    assert "Nothing to be done" in dry
