"""The whole DAG on the smoke profile through Snakemake in a temporary copy (DVC: test_dvc.py)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_built

from twostage.artifacts import load_torch
from twostage.config import load_params
from twostage.plan import jobs
from twostage.runtime import cpu_has_native_bf16

pytestmark = pytest.mark.slow

SMOKE = "params/profiles/smoke.yaml"
DRY_RUN = ["snakemake", "-n", "--cores", "2", "--configfile", SMOKE]


def _run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return proc.stdout + proc.stderr


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, int | float):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)


def check_artifacts(root: Path, profiles: tuple[str, ...] = (SMOKE,)) -> None:
    params = load_params(list(profiles), root=root)
    for job in jobs(params):
        for path in job.outs + job.metrics + job.plots:
            assert (root / path).is_file() and (root / path).stat().st_size > 0, path
        for metrics in job.metrics:
            values = list(_numbers(json.loads((root / metrics).read_text())))
            assert values and all(math.isfinite(v) for v in values), metrics
    for run in params["targets"]:
        ev = json.loads((root / f"results/eval/{run}/metrics.json").read_text())
        assert 0 <= ev["precision"] <= 1 and 0 <= ev["coverage"] <= 1 and ev["fd_classifier"] >= 0
    html = (root / "results/report/index.html").read_text()
    assert "<table" in html and "calibration: real validation images" in html
    assert html.count("(stage-1 ceiling)") == len(params.target_autoencoders())
    # The headline: one table per autoencoder with its floor, ceiling and bad model once each.
    before_claims = html.split('id="claims"')[0]  # the claims table comes after the headlines
    headlines = [
        t.split("</table>")[0] for t in before_claims.split('<table class="headline">')[1:]
    ]
    assert len(headlines) == len(params.target_autoencoders())
    for table in headlines:
        assert [table.count(r) for r in ("floor: ", "ceiling: ", "bad: ")] == [1, 1, 1], table
    # Every trained model's validation columns, as named in report/convergence.py, are in
    # the log its real trainer wrote.
    conv = pd.read_csv(root / "results/report/tables/convergence.csv")
    trained = set(params.target_autoencoders()) | set(params.target_priors())
    assert set(conv["model"]) == trained and (conv["n_evals"] >= 1).all(), conv
    for src in html.split('src="')[1:]:
        assert (root / "results/report" / src.split('"')[0]).is_file()
    check_claims(root, params, html)


def _metric_at(root: Path, params, run: str, seed: int, metric: str) -> float:
    """``metric`` of the replicate of ``run`` with ``seed``, from its evaluation."""
    replicate = {s: r for r, s in params.replicates_of(run)}[seed]
    return json.loads((root / f"results/eval/{replicate}/metrics.json").read_text())[metric]


def check_claims(root: Path, params, html: str) -> None:
    """The smoke claim is judged in the report from the scores of its held-out replicates:
    the per-seed differences of the two runs' metric, their mean inside its interval, and a
    verdict, in the claims table under the headline."""
    table = pd.read_csv(root / "results/report/tables/claims.csv").set_index("claim")
    assert list(table.index) == list(params["claims"]) and len(table) >= 1
    section = html.split('id="claims"')[1].split("<h2")[0]
    for name, claim in params["claims"].items():
        row, versus, metric = table.loc[name], claim["versus"], claim["metric"]
        diffs = [
            _metric_at(root, params, claim["run"], seed, metric)
            - (
                versus
                if not isinstance(versus, str)
                else _metric_at(root, params, versus, seed, metric)
            )
            for seed in claim["seeds"]
        ]
        assert row["mean"] == pytest.approx(np.mean(diffs), rel=1e-9)
        assert row["ci95_low"] < row["mean"] < row["ci95_high"]  # two seeds that differ
        assert row["verdict"] in ("supported", "contradicted", "inconclusive")
        assert row["held_out_seeds"] == " ".join(map(str, claim["seeds"]))
        assert name in section and row["verdict"] in section


@pytest.fixture(scope="module")
def snakemake_project(tmp_path_factory, smoke_dag: Path) -> Path:
    """The shared smoke DAG (conftest.smoke_dag), copied: some tests here edit params."""
    return copy_built(smoke_dag, tmp_path_factory.mktemp("snake") / "project")


def test_snakemake_builds_every_artifact(snakemake_project: Path):
    check_artifacts(snakemake_project)
    logs = list((snakemake_project / "results/logs").rglob("*.log"))
    benchmarks = list((snakemake_project / "results/benchmarks").rglob("*.tsv"))
    assert len(logs) == len(benchmarks) == len(jobs(load_params([SMOKE], root=snakemake_project)))


def test_no_stage_imports_project_code_outside_its_static_dependencies(snakemake_project: Path):
    # Each stage compares the project modules it imported with its static code closure
    # (codedeps.py) and records any other one: an edit to it would not make it stale.
    for job in jobs(load_params([SMOKE], root=snakemake_project)):
        for metrics in job.metrics:
            made = json.loads((snakemake_project / metrics).read_text())["versions"]
            assert set(made) == {"code", "software", "machine"}, (metrics, made)


def test_each_run_samples_with_its_own_sampler(snakemake_project: Path):
    # Same prior, steps and temperature; only the sampler differs, so the images must too.
    samples = snakemake_project / "results/samples"
    confidence = np.load(samples / "absorbing_confidence/images.npy")
    random_order = np.load(samples / "absorbing_steps-s4-t0p8/images.npy")
    assert confidence.shape == random_order.shape and not np.array_equal(confidence, random_order)
    stats = json.loads((samples / "absorbing_confidence/stats.json").read_text())
    assert stats["sampler"] == "confidence" and stats["steps"] == 4
    # Measured, not the 4 steps: per batch the all-masked first step is one shared row, and
    # the cosine schedule (2, 3, 5, 6 of 16 tokens) changes every row before steps 2..4.
    spec = load_params([SMOKE], root=snakemake_project).run("absorbing_confidence")
    n, batch = stats["n_samples"], spec["batch_size"]
    batches = -(-n // batch)
    assert stats["network_calls_per_sample"] == pytest.approx((batches + 3 * n) / n)
    assert stats["network_batched_calls"] == 4 * batches
    # The smoke profile asks this run for bf16: used exactly where the CPU has it natively.
    assert stats["cpu_bf16"] is cpu_has_native_bf16()
    plain = json.loads((samples / "absorbing_steps-s4-t0p8/stats.json").read_text())
    assert plain["cpu_bf16"] is False


def test_calibration_brackets_every_run(snakemake_project: Path):
    # The floor (real validation images) must beat the bad model (decoded random tokens or
    # N(0, I) latents), or no FD in between means anything; each run's FD is finite and
    # above the floor, and one at or worse than the bad model is marked so in the report.
    params = load_params([SMOKE], root=snakemake_project)
    results = snakemake_project / "results"
    fd_key = f"fd_{params['evaluation']['extractor']}"
    scale = {}
    for ae in params.target_autoencoders():
        cal = json.loads((results / f"calibration/{ae}/metrics.json").read_text())
        scale[ae] = cal["real_val_vs_train"][fd_key], cal["random_tokens"][fd_key]
        assert 0 <= scale[ae][0] < scale[ae][1], (ae, scale[ae])
    table = pd.read_csv(results / "report/tables/runs.csv").set_index("run")
    page = (results / "report/index.html").read_text()
    for run in params["targets"]:
        fd = json.loads((results / f"eval/{run}/metrics.json").read_text())[fd_key]
        floor, bad = scale[params.autoencoder_of_prior(params.prior_of_run(run))]
        assert math.isfinite(fd) and fd > floor, (run, fd, floor)
        # the table's score of a run with replicates is their mean (report/replicates.py)
        scores = [
            json.loads((results / f"eval/{r}/metrics.json").read_text())[fd_key]
            for r, _ in params.replicates_of(run)
        ]
        assert table.loc[run, fd_key] == pytest.approx(np.mean(scores))
        standing = table.loc[run, "fd_vs_calibration"]
        if fd >= bad:  # equal: the vae run decodes N(0, I) latents, as its calibration does
            assert standing.startswith(("worse than", "equal to")), (run, standing)
            assert standing in page, (run, standing)
        else:
            assert standing == "between floor and bad model", (run, fd, floor, bad)


def test_replicates_redo_their_level_with_their_seed(snakemake_project: Path):
    # The smoke profile replicates one run per level: each replicate redid what its level
    # names with its own seed (different numbers), shared the rest, and the runs table
    # gives every run's FD an interval and says which kind: t over the seeds, or a single
    # run's sampling interval over its samples.
    params = load_params([SMOKE], root=snakemake_project)
    results = snakemake_project / "results"

    def differ(a: str, b: str) -> bool:
        return not np.array_equal(np.load(results / a), np.load(results / b))

    assert params.replicates_of("absorbing_confidence")[1] == ("absorbing_confidence-seed1", 1)
    assert differ("latents/vq_mnist/train.npy", "latents/vq_mnist-seed1/train.npy")  # chain
    assert params.prior_of_run("glf-seed3") == "glf_mnist-seed3"  # prior
    logs = [
        (results / f"priors/{pr}/train_log.csv").read_text()
        for pr in ("glf_mnist", "glf_mnist-seed3")
    ]
    assert logs[0] != logs[1]
    assert params.prior_of_run("rae_gmm-seed1") == "gmm_rae_mnist"  # sampling
    for run in ("absorbing_confidence", "glf", "rae_gmm"):
        replicate = params.replicates_of(run)[1][0]
        assert differ(f"samples/{run}/images.npy", f"samples/{replicate}/images.npy"), run
    fd_key = f"fd_{params['evaluation']['extractor']}"
    table = pd.read_csv(results / "report/tables/runs.csv").set_index("run")
    for run in params["targets"]:
        n = len(params.replicates_of(run))
        assert table.loc[run, "n_replicates"] == n, run
        assert math.isfinite(table.loc[run, f"{fd_key}_ci95"]), run
        assert table.loc[run, f"{fd_key}_ci95"] > 0, run
        if n == 1:
            metrics = json.loads((results / f"eval/{run}/metrics.json").read_text())
            own = metrics["sampling_intervals"]
            assert table.loc[run, f"{fd_key}_ci95"] == pytest.approx(own[f"{fd_key}_ci95"])
            assert table.loc[run, "interval"] == "single run, sampling interval (95 %)", run
        else:
            assert table.loc[run, "interval"] == f"over {n} replicates (Student-t 95 %)", run
    rows = pd.read_csv(results / "report/tables/replicates.csv")
    assert len(rows) == sum(len(params.replicates_of(r)) for r in params["targets"])
    assert (results / "report/tables/run_differences.csv").is_file()


def test_continuous_priors_go_through_the_dag(snakemake_project: Path):
    # One run per continuous prior kind, with that kind's likelihood in its metrics.
    likelihood = {
        "glf": "flow_val_nll_bits_per_dim",
        "rae_gmm": "gmm_val_avg_log_likelihood",
        "vae": "vae_val_elbo_nats",
        "vae_flow": "vae_val_elbo_nats",  # the joint model's bound, under the VAE's key
        "glf_regularized": "glf_val_flow_nll_nats",
        "glf_temperature-t0p6": "flow_val_nll_bits_per_dim",  # a sweep over temperatures
    }
    params = load_params([SMOKE], root=snakemake_project)
    results = snakemake_project / "results"
    for run, key in likelihood.items():
        images = np.load(results / f"samples/{run}/images.npy")
        assert images.dtype == np.uint8 and images.shape == (200, 32, 32, 1), run
        prior = json.loads(
            (results / f"priors/{params.prior_of_run(run)}/metrics.json").read_text()
        )
        assert math.isfinite(prior[key]), run
    calibration = json.loads((results / "calibration/vae_mnist/metrics.json").read_text())
    assert set(calibration) - {"versions"} == {"real_val_vs_train", "random_tokens"}
    assert "calibration: decoded N(0, I) latents" in (results / "report/index.html").read_text()
    joint = load_torch(results / "priors/flow_vae_mnist/model.pt")
    assert joint["kind"] == "vae_flow" and joint["autoencoder"]["kind"] == "vae"


def _job_intervals(root: Path) -> list[tuple[float, float, str]]:
    """(start, end, log) of every stage job, from the CLI's closing "done in X s" log line."""
    from datetime import datetime

    pattern = re.compile(r"^(\S+ \S+) twostage \S+ \S+ done in ([0-9.]+) s", re.M)
    intervals = []
    for log in (root / "results/logs").rglob("*.log"):
        for stamp, seconds in pattern.findall(log.read_text()):
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            intervals.append((end - float(seconds), end, str(log.relative_to(root))))
    return intervals


def test_cores_2_ran_jobs_concurrently(snakemake_project: Path):
    # Evidence for the parallel-safety claim: with --cores 2 some jobs really overlapped,
    # and the artifacts checked above are still complete and valid.
    intervals = sorted(_job_intervals(snakemake_project))
    assert len(intervals) >= 10
    overlapping = [
        (a[2], b[2]) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1] - 0.1
    ]
    assert overlapping, intervals


def test_snakemake_has_nothing_left_to_do(snakemake_project: Path, tool_env: dict):
    out = _run(
        ["snakemake", "-n", "--cores", "2", "--configfile", SMOKE], snakemake_project, tool_env
    )
    assert "Nothing to be done" in out


def _jobs_after_edit(project: Path, env: dict, old: str, new: str) -> dict[str, int]:
    """Job counts of a dry run after replacing ``old`` by ``new`` in evaluation.yaml (restored)."""
    params = project / "params/evaluation.yaml"
    original = params.read_text()
    assert old in original
    params.write_text(original.replace(old, new))
    try:
        out = _run(DRY_RUN, project, env)
    finally:
        params.write_text(original)
    # The "Job stats" table: one "rule count" line per rule that would run, then "total".
    table = out[out.index("Job stats:") :].split("total")[0]
    rows = [line.split() for line in table.splitlines()]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}


def test_changing_a_run_param_reruns_only_that_run(snakemake_project: Path, tool_env: dict):
    jobs = _jobs_after_edit(
        snakemake_project,
        tool_env,
        "    sampler: confidence\n    steps: 4\n    temperature: 0.8",
        "    sampler: confidence\n    steps: 4\n    temperature: 0.7",
    )
    # the run and its replicates (the smoke profile replicates it: seeds.py)
    n = len(load_params([SMOKE], root=snakemake_project).replicates_of("absorbing_confidence"))
    assert n > 1
    assert jobs == {"sample": n, "evaluate": n, "neighbours": 1, "report": 1, "all": 1}


def test_adding_a_temperature_adds_exactly_its_jobs(snakemake_project: Path, tool_env: dict):
    jobs = _jobs_after_edit(
        snakemake_project, tool_env, "temperature: [0.6, 1.0]", "temperature: [0.6, 0.9, 1.0]"
    )
    assert jobs == {"sample": 1, "evaluate": 1, "neighbours": 1, "report": 1, "all": 1}
