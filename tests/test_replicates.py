"""Replicates: seeds as a DAG dimension (seeds.py, plan.py) and the intervals the report
gives every run (report/replicates.py)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from twostage import cli, paths
from twostage.artifacts import write_json
from twostage.config import ConfigError, load_params
from twostage.plan import dvc_pipeline, jobs, param_values
from twostage.report import replicates

SMOKE = "params/profiles/smoke.yaml"


@pytest.fixture
def params_root(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def _set_replicates(root: Path, file: str, value: dict | None) -> None:
    path = root / "params" / file
    data = yaml.safe_load(path.read_text())
    if value is None:
        data.pop("replicates", None)
    else:
        data["replicates"] = value
    path.write_text(yaml.safe_dump(data))


def _plan(p, profiles, root) -> dict:
    """Everything a job is to both tools: its DVC stage and Snakemake's params values."""
    stages = dvc_pipeline(p, profiles, root=root)["stages"]
    values = {j.dvc_name: param_values(p, j) for j in jobs(p)}
    return {name: (stage, values[name]) for name, stage in stages.items()}


def _stripped_root(params_root: Path) -> Path:
    """The params without replicates, and without the claims that add seeds to them."""
    for f in ("evaluation.yaml", "profiles/smoke.yaml"):
        _set_replicates(params_root, f, None)
        path = params_root / "params" / f
        data = yaml.safe_load(path.read_text())
        if f == "evaluation.yaml":
            data["claims"] = {}
        else:
            data.pop("claims", None)
        path.write_text(yaml.safe_dump(data))
    return params_root


@pytest.mark.parametrize("profiles", [[], [SMOKE]])
def test_replicates_add_jobs_and_change_none(repo: Path, params_root: Path, profiles: list[str]):
    # The committed params with their replicates, against the same params without: every
    # job of the single-seed plan is there unchanged (names, paths, params, commands), only
    # the report reads more, and the added jobs are exactly the replicates'.
    full = _plan(load_params(profiles, root=repo), profiles, repo)
    root = _stripped_root(params_root)
    single = _plan(load_params(profiles, root=root), profiles, root)
    for name, job in single.items():
        if name != "report":
            assert full[name] == job, name
    added = set(full) - set(single)
    if not profiles:
        # read from the files: each default target replicated over 3 sampling seeds
        settings = yaml.safe_load((repo / "params/evaluation.yaml").read_text())["replicates"]
        targets = yaml.safe_load((repo / "params/config.yaml").read_text())["targets"]
        replicated = [run for run in targets if run in settings]
        assert replicated and all(
            settings[r] == {"seeds": 3, "level": "sampling"} for r in replicated
        )
        expected = {
            f"{stage}-{run}-seed{k}"
            for run in replicated
            for k in (1, 2)
            for stage in ("sample", "evaluate")
        }
    else:
        expected = {
            "train_autoencoder-vq_mnist-seed1",
            "encode-vq_mnist-seed1",
            "train_prior-absorbing_mnist-seed1",
            "sample-absorbing_confidence-seed1",
            "evaluate-absorbing_confidence-seed1",
            "train_prior-glf_mnist-seed3",
            "sample-glf-seed3",
            "evaluate-glf-seed3",
            "sample-rae_gmm-seed1",
            "evaluate-rae_gmm-seed1",
            # the claim's held-out seeds 1 and 3: the absorbing chain at 3, the GLF prior at 1
            "train_autoencoder-vq_mnist-seed3",
            "encode-vq_mnist-seed3",
            "train_prior-absorbing_mnist-seed3",
            "sample-absorbing_confidence-seed3",
            "evaluate-absorbing_confidence-seed3",
            "train_prior-glf_mnist-seed1",
            "sample-glf-seed1",
            "evaluate-glf-seed1",
        }
    assert added == expected
    report_deps = set(full["report"][0]["deps"]) - set(single["report"][0]["deps"])
    # The replicates' scores, and what the claims table reads at the held-out seeds.
    scores = {
        paths.evaluation(n.split("-", 1)[1])["metrics"] for n in added if n.startswith("evaluate-")
    }
    claimed = set()
    if profiles:  # the smoke's claim: absorbing_confidence against glf at seeds 1 and 3
        p = load_params(profiles, root=repo)
        for run in [f"{r}-seed{k}" for r in ("absorbing_confidence", "glf") for k in (1, 3)]:
            claimed |= {paths.samples(run)["stats"], paths.prior(p.prior_of_run(run))["metrics"]}
    assert report_deps == scores | claimed


def test_one_seed_is_no_replicate(params_root: Path):
    _set_replicates(params_root, "evaluation.yaml", {"glf": {"seeds": 1, "level": "chain"}})
    one = load_params(root=params_root)
    _set_replicates(params_root, "evaluation.yaml", {"glf": {"seeds": [0]}})
    listed = load_params(root=params_root)
    _set_replicates(params_root, "evaluation.yaml", None)
    none = load_params(root=params_root)
    assert _plan(one, [], params_root) == _plan(none, [], params_root)
    assert _plan(listed, [], params_root) == _plan(none, [], params_root)
    assert one.replicates_of("glf") == [("glf", 0)] == none.replicates_of("glf")


def _added_jobs(root: Path, replicates: dict) -> dict[str, list[str]]:
    _set_replicates(root, "evaluation.yaml", None)
    before = {j.dvc_name for j in jobs(load_params(root=root))}
    _set_replicates(root, "evaluation.yaml", replicates)
    return {j.dvc_name: j.deps for j in jobs(load_params(root=root)) if j.dvc_name not in before}


def test_each_level_fans_out_what_it_names(params_root: Path):
    # sampling: only sampling and scoring, from the one trained prior
    added = _added_jobs(params_root, {"glf": {"seeds": 2, "level": "sampling"}})
    assert set(added) == {"sample-glf-seed1", "evaluate-glf-seed1"}
    assert paths.prior("glf_mnist")["model"] in added["sample-glf-seed1"]
    # prior: the prior's training too, on the one autoencoder
    added = _added_jobs(params_root, {"autoregressive": {"seeds": 3, "level": "prior"}})
    assert set(added) == {
        f"{stage}-{name}-seed{k}"
        for k in (1, 2)
        for stage, name in (
            ("train_prior", "autoregressive_mnist"),
            ("sample", "autoregressive"),
            ("evaluate", "autoregressive"),
        )
    }
    assert paths.latents("vq_mnist")["train"] in added["train_prior-autoregressive_mnist-seed2"]
    assert (
        paths.prior("autoregressive_mnist-seed2")["model"] in added["sample-autoregressive-seed2"]
    )
    # chain: stage 1 as well; one dataset, classifier and real-feature cache for all
    added = _added_jobs(params_root, {"absorbing_steps": {"seeds": [0, 7], "level": "chain"}})
    runs = [r for r in load_params(root=params_root)["targets"] if r.startswith("absorbing_steps")]
    assert set(added) == {
        "train_autoencoder-vq_mnist-seed7",
        "encode-vq_mnist-seed7",
        "train_prior-absorbing_mnist-seed7",
        *(f"{stage}-{run}-seed7" for run in runs for stage in ("sample", "evaluate")),
    }
    assert paths.latents("vq_mnist-seed7")["train"] in added["train_prior-absorbing_mnist-seed7"]
    assert paths.data("mnist5k")["train"] in added["train_autoencoder-vq_mnist-seed7"]
    evaluate = added[f"evaluate-{runs[0]}-seed7"]
    assert paths.classifier("mnist5k")["model"] in evaluate
    assert paths.features("mnist5k", "classifier")["train"] in evaluate


def test_seeds_reach_the_training_and_sampling_code(params_root: Path, monkeypatch):
    # A replicate trains and samples with its own seed; its scoring keeps the global seed
    # (one evaluation protocol for every run).
    _set_replicates(params_root, "evaluation.yaml", {"glf": {"seeds": [0, 4, 9], "level": "chain"}})
    p = load_params(root=params_root)
    assert p.replicates_of("glf") == [("glf", 0), ("glf-seed4", 4), ("glf-seed9", 9)]
    assert p.prior_of_run("glf-seed9") == "glf_mnist-seed9"
    assert p.autoencoder_of_prior("glf_mnist-seed9") == "ae_mnist-seed9"
    assert p.original("priors", "glf_mnist-seed9") == "glf_mnist"
    seen = {}
    monkeypatch.chdir(params_root)
    monkeypatch.setattr(
        cli, "stage_function", lambda s: lambda q, n: seen.update({(s, n): q["seed"]})
    )
    monkeypatch.setattr(cli, "_record_versions", lambda *a: None)
    for stage, name in [
        ("train-autoencoder", "ae_mnist-seed4"),
        ("train-prior", "glf_mnist-seed9"),
        ("sample", "glf-seed9"),
        ("evaluate", "glf-seed9"),
        ("sample", "glf"),
    ]:
        assert cli.main([stage, name]) == 0
    assert seen == {
        ("train_autoencoder", "ae_mnist-seed4"): 4,
        ("train_prior", "glf_mnist-seed9"): 9,
        ("sample", "glf-seed9"): 9,
        ("evaluate", "glf-seed9"): 0,
        ("sample", "glf"): 0,
    }


@pytest.mark.parametrize(
    ("replicates", "message"),
    [
        ({"nope": {"seeds": 2}}, r"evaluation\.yaml: replicates\.nope: undefined run or sweep"),
        ({"glf": {"seeds": 2, "level": "stage1"}}, r"evaluation\.yaml: replicates\.glf\.level"),
        ({"glf": {"seeds": 0}}, r"evaluation\.yaml: replicates\.glf\.seeds"),
        ({"glf": {"seeds": [1, 1]}}, r"evaluation\.yaml: replicates\.glf\.seeds"),
        ({"glf": {"level": "prior"}}, r"replicates\.glf: 'seeds' is a required property"),
        (
            {
                "absorbing_steps": {"seeds": 2, "level": "prior"},
                "absorbing_confidence": {"seeds": 2, "level": "chain"},
            },
            r"evaluation\.yaml: replicates: prior 'absorbing_mnist-seed1' is replicated at "
            r"level chain for run 'absorbing_confidence' and at level prior for run "
            r"'absorbing_steps-s2-t0p8'",
        ),
    ],
)
def test_bad_replicates_give_one_line(params_root: Path, replicates: dict, message: str):
    _set_replicates(params_root, "evaluation.yaml", replicates)
    with pytest.raises(ConfigError, match=message) as err:
        load_params(root=params_root)
    assert "\n" not in str(err.value)


def test_a_replicate_may_not_replace_an_entry(params_root: Path):
    path = params_root / "params" / "evaluation.yaml"
    data = yaml.safe_load(path.read_text())
    data["runs"]["glf-seed1"] = dict(data["runs"]["glf"])
    data["replicates"] = {"glf": {"seeds": 2}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"replicate 'glf-seed1' would replace the run"):
        load_params(root=params_root)


# Aggregation ------------------------------------------------------------------------


def test_t_interval_of_hand_values():
    # mean 2, sample std 1, n 3: t(0.975, 2) = 4.302653 (any t table), so 4.302653 / sqrt(3)
    assert replicates.t_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3))
    # n 2, values 10 and 14: std 2·sqrt(2), t(0.975, 1) = 12.7062
    assert replicates.t_half_width([10.0, 14.0]) == pytest.approx(12.7062 * 2)
    assert math.isnan(replicates.t_half_width([5.0]))


def _evaluations(root: Path, p, scores: dict[str, dict]) -> None:
    for run, metrics in scores.items():
        path = root / paths.evaluation(run)["metrics"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, metrics)


def test_runs_table_gets_mean_std_interval_kind_and_pairs(params_root: Path, monkeypatch):
    _set_replicates(
        params_root,
        "evaluation.yaml",
        {"glf": {"seeds": 3}, "rae_gmm": {"seeds": 3}, "vae": {"seeds": 2}},
    )
    path = params_root / "params" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["targets"] = ["glf", "rae_gmm", "vae", "vae_flow", "autoregressive"]
    path.write_text(yaml.safe_dump(config))
    p = load_params(root=params_root)
    monkeypatch.chdir(params_root)
    fd = {
        "glf": [10.0, 11.0, 12.0],
        "rae_gmm": [20.0, 21.0, 22.0],
        "vae": [10.5, 12.5],
    }
    scores = {}
    for run, values in fd.items():
        for (name, _), v in zip(p.replicates_of(run), values, strict=True):
            scores[name] = {"fd_classifier": v, "precision": v / 100, "protocol": {"k": 3}}
    # two single runs, each with the half-widths its evaluation measured over its samples
    for run, value, half in (("vae_flow", 30.0, 1.5), ("autoregressive", 32.0, 1.0)):
        own = {"fd_classifier_ci95": half, "precision_ci95": 0.01, "splits": 50}
        scores[run] = {"fd_classifier": value, "precision": 0.3, replicates.BLOCK: own}
    _evaluations(params_root, p, scores)

    reps = replicates.replicate_rows(p)
    assert list(reps["replicate"]) == [
        "glf", "glf-seed1", "glf-seed2", "rae_gmm", "rae_gmm-seed1", "rae_gmm-seed2",
        "vae", "vae-seed1", "vae_flow", "autoregressive",
    ]  # fmt: skip
    summary = replicates.summary(p, reps)
    runs = pd.DataFrame(
        {
            "run": [*config["targets"], "calibration: floor"],
            "fd_classifier": [10.0, 20.0, 10.5, 30.0, 32.0, 1.0],
        }
    )
    table = replicates.with_intervals(runs, summary).set_index("run")
    half = 4.302653 / math.sqrt(3)  # std 1 over 3 seeds
    assert table.loc["glf", "fd_classifier"] == pytest.approx(11.0)
    assert table.loc["glf", "fd_classifier_std"] == pytest.approx(1.0)
    assert table.loc["glf", "fd_classifier_ci95"] == pytest.approx(half, rel=1e-6)
    assert table.loc["vae", "fd_classifier_ci95"] == pytest.approx(12.7062, rel=1e-5)
    assert table.loc["vae_flow", "fd_classifier_ci95"] == 1.5  # its own samples, one seed
    assert math.isnan(table.loc["vae_flow", "fd_classifier_std"])
    assert table.loc["glf", "n_replicates"] == 3 and table.loc["vae_flow", "n_replicates"] == 1
    # every row says which kind its ± is, in a column and in words
    assert table.loc["glf", "interval_kind"] == replicates.REPLICATES
    assert table.loc["glf", "interval"] == "over 3 replicates (Student-t 95 %)"
    assert table.loc["vae", "interval"] == "over 2 replicates (Student-t 95 %)"
    assert table.loc["vae_flow", "interval_kind"] == replicates.SINGLE_RUN
    assert table.loc["vae_flow", "interval"] == "single run, sampling interval (95 %)"
    assert math.isnan(table.loc["calibration: floor", "fd_classifier_ci95"])
    cols = list(table.reset_index().columns)
    assert cols[cols.index("fd_classifier") + 1 :][:2] == [
        "fd_classifier_std",
        "fd_classifier_ci95",
    ]

    diffs = replicates.differences(summary, reps, "fd_classifier").set_index(["run_a", "run_b"])
    # Only pairs whose intervals are of one kind: the three replicated runs among
    # themselves, the two single runs with each other; never a half-width over seeds
    # added to one over samples.
    assert set(diffs.index) == {
        ("glf", "rae_gmm"),
        ("glf", "vae"),
        ("rae_gmm", "vae"),
        ("vae_flow", "autoregressive"),
    }
    assert diffs.loc[("glf", "vae"), "interval_kind"] == replicates.REPLICATES
    assert diffs.loc[("vae_flow", "autoregressive"), "interval_kind"] == replicates.SINGLE_RUN
    # glf 11 ± 2.48 and vae 11.5 ± 12.7 overlap; glf and rae_gmm are 10 apart with ± 2.48 each
    assert diffs.loc[("glf", "vae"), "within_intervals"]
    assert not diffs.loc[("glf", "rae_gmm"), "within_intervals"]
    # 30 ± 1.5 and 32 ± 1.0: 2 apart, within 2.5
    assert diffs.loc[("vae_flow", "autoregressive"), "within_intervals"]
    assert diffs.loc[("vae_flow", "autoregressive"), "difference"] == pytest.approx(2.0)
    welch = stats.ttest_ind([10.0, 11.0, 12.0], [20.0, 21.0, 22.0], equal_var=False).pvalue
    assert diffs.loc[("glf", "rae_gmm"), "welch_p"] == pytest.approx(welch)
    assert math.isnan(diffs.loc[("vae_flow", "autoregressive"), "welch_p"])  # one seed: no test
    text = replicates._text(diffs.reset_index(), summary, "fd_classifier")
    assert "glf ~ vae" in text and "vae_flow ~ autoregressive" in text
    assert "rae_gmm ~ vae" in text  # 21 ± 2.48 and 11.5 ± 12.7
    assert "3 of 4 compared pairs" in text
    assert "(6 pairs of runs with intervals of different kinds, or none, are not)" in text


def test_a_single_run_without_its_intervals_is_compared_with_nothing():
    # An evaluation written before it measured its own intervals has none: no kind, so it
    # is in no pair (its half-width is NaN, and no sum with it means anything).
    summary = pd.DataFrame(
        {
            "run": ["a", "b", "c"],
            "n_replicates": [1, 1, 1],
            "interval_kind": [replicates.SINGLE_RUN, replicates.SINGLE_RUN, ""],
            "fd": [5.0, 9.0, 7.0],
            "fd_ci95": [1.0, 2.0, math.nan],
        }
    )
    diffs = replicates.differences(summary, pd.DataFrame(), "fd")
    assert list(zip(diffs["run_a"], diffs["run_b"], strict=True)) == [("a", "b")]
    assert not diffs.loc[0, "within_intervals"]  # 4 apart, half-widths sum to 3
