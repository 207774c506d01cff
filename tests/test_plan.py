"""Snakemake and DVC run the same DAG: same stages, same outputs, same commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from twostage import plan as planning
from twostage.config import load_params
from twostage.plan import dvc_pipeline, jobs
from twostage.stages import STAGES


def _dvc_files(pipeline: dict) -> set[str]:
    files = set()
    for stage in pipeline["stages"].values():
        files.update(stage.get("outs", []))
        for key in ("metrics", "plots"):
            files.update(next(iter(entry)) for entry in stage.get(key, []))
    return files


def _snakemake_outputs(repo: Path, env: dict, profiles: list[str]) -> set[str]:
    args = ["snakemake", "--summary", "--cores", "1"]
    for profile in profiles:
        args += ["--configfile", profile]
    out = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, check=True)
    lines = [line.split("\t") for line in out.stdout.splitlines()[1:] if "\t" in line]
    return {cols[0] for cols in lines}


def test_committed_dvc_yaml_is_generated_from_the_plan(repo: Path):
    committed = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert committed == dvc_pipeline(load_params(root=repo), [], root=repo), (
        "dvc.yaml is stale: regenerate it with `twostage dvc-yaml`"
    )


def test_snakemake_and_dvc_name_the_same_outputs(repo: Path, tool_env: dict):
    for profiles in ([], ["params/profiles/smoke.yaml"]):
        params = load_params(profiles, root=repo)
        dvc = _dvc_files(dvc_pipeline(params, profiles, root=repo))
        assert _snakemake_outputs(repo, tool_env, profiles) == dvc


def test_every_job_appears_once_and_upstream_first(repo: Path):
    plan = jobs(load_params(root=repo))
    names = [j.dvc_name for j in plan]
    assert len(names) == len(set(names))
    built: set[str] = set()
    for job in plan:
        assert set(job.deps) <= built, f"{job.dvc_name} needs outputs of a later job"
        built.update(job.outs + job.metrics + job.plots)


def test_every_stage_has_its_job_builder_and_its_rule(repo: Path):
    """The stage table (stages.py) is the one list of stages: each entry's job builder
    makes jobs of that stage, and each rule takes its lines from the StageRule of its own
    stage (sample_conditional: a second rule of sample) and its shell line from
    stage_shell of that stage, by name: Snakemake evaluates a shell line again when the
    job runs, when the StageRule binding is another stage's."""
    params = load_params(["params/profiles/smoke.yaml"], root=repo)
    plan = jobs(params)
    assert {j.stage for j in plan} == {*STAGES, "report"}
    for j in plan:
        assert planning.job(params, j.stage, j.name) == j
    rules, shells, bound, rule = {}, {}, None, None
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if found := re.fullmatch(r'stage = StageRule\("(\w+)"\)', line):
                bound = found[1]
            elif found := re.fullmatch(r"rule (\w+):", line):
                rule = found[1]
                rules[rule] = bound
            elif found := re.fullmatch(r' +stage_shell\("(\w+)"\)', line):
                shells[rule] = found[1]
            assert "stage.shell" not in line, f"{smk.name}: {line}"
    assert rules == {**{s: s for s in [*STAGES, "report"]}, "sample_conditional": "sample"}
    assert shells == rules
