"""Jobs that run at the same time (`snakemake --cores N`, a cluster) never write the same file:
every file has one writer, and every shared cache is a declared output of exactly one job."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from twostage import paths
from twostage.config import load_params
from twostage.paths import STATE_DIR
from twostage.plan import Job, jobs

# Two experiments on one dataset with their own autoencoders: the data, the
# classifier and the real-image features are shared by both.
SECOND_EXPERIMENT = {
    "autoencoders": {"vq_other": {"dataset": "mnist5k"}},
    "priors": {"absorbing_other": {"autoencoder": "vq_other"}},
    "runs": {"other": {"prior": "absorbing_other"}},
}


def _with_second_experiment(root: Path) -> None:
    for file, table, template_name in (
        ("autoencoders.yaml", "autoencoders", "vq_mnist"),
        ("priors.yaml", "priors", "absorbing_mnist"),
        ("evaluation.yaml", "runs", "absorbing_confidence"),
    ):
        path = root / "params" / file
        data = yaml.safe_load(path.read_text())
        template = data[table][template_name]
        for name, changes in SECOND_EXPERIMENT[table].items():
            data[table][name] = {**template, **changes}
        path.write_text(yaml.safe_dump(data))
    config = root / "params/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["targets"].append("other")
    config.write_text(yaml.safe_dump(data))


@pytest.fixture(params=["default", "smoke", "two_experiments"])
def plan(request, tmp_path: Path, repo: Path) -> list[Job]:
    if request.param == "default":
        return jobs(load_params(root=repo))
    if request.param == "smoke":
        return jobs(load_params(["params/profiles/smoke.yaml"], root=repo))
    shutil.copytree(repo / "params", tmp_path / "params")
    _with_second_experiment(tmp_path)
    return jobs(load_params(root=tmp_path))


def _written(job: Job) -> list[str]:
    return job.outs + job.metrics + job.plots


def test_no_two_jobs_write_the_same_file(plan: list[Job]):
    writers = Counter(path for job in plan for path in _written(job))
    assert [path for path, n in writers.items() if n > 1] == []


def test_every_result_a_job_reads_is_declared_by_one_job(plan: list[Job]):
    written = {path for job in plan for path in _written(job)}
    for job in plan:
        for dep in job.deps:
            if dep.startswith(f"{paths.RESULTS}/"):
                assert dep in written, f"{job.dvc_name} reads {dep}, which no job declares"


def test_shared_caches_are_outputs_read_by_several_jobs(tmp_path: Path, repo: Path):
    shutil.copytree(repo / "params", tmp_path / "params")
    _with_second_experiment(tmp_path)
    plan = jobs(load_params(root=tmp_path))
    readers = Counter(dep for job in plan for dep in job.deps)
    features = paths.features("mnist5k", "classifier")["train"]
    owners = [job.dvc_name for job in plan if features in _written(job)]
    assert owners == ["extract_features-mnist5k"]
    # Both autoencoders' calibrations and every run's evaluation read the one cache.
    assert readers[features] >= 2 + 1 + 1


def test_logs_benchmarks_and_training_states_are_per_job(plan: list[Job]):
    # What a job writes outside its declared outputs is keyed by (stage, name) too.
    side_files = Counter(
        path
        for job in plan
        for path in (
            f"{paths.RESULTS}/logs/{job.stage}/{job.name}.log",
            f"{paths.RESULTS}/benchmarks/{job.stage}/{job.name}.tsv",
            f"{STATE_DIR}/{job.stage}/{job.name}.pt",
        )
    )
    assert max(side_files.values()) == 1
