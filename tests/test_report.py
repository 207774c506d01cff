"""The report on synthetic artifacts with known numbers: tables, figures, escaping, a real browser.

The artifacts are written by the test (no DAG run): every file the report
reads for the smoke targets, with values chosen so each table cell can be checked.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from twostage import paths
from twostage.config import load_params
from twostage.plan import report_inputs
from twostage.report import figures, replicates
from twostage.report.build import build_report
from twostage.report.collect import (
    CALIBRATION_ROWS,
    CEILING_ROW,
    CONTINUOUS_CALIBRATION_ROWS,
)
from twostage.report.convergence import MARKER
from twostage.report.headline import (
    BEST,
    BITS,
    fd_text,
    headline_rows,
    headline_tables,
    legend,
    with_interval,
)

SMOKE = "params/profiles/smoke.yaml"
HOSTILE = '<script>alert("x")</script>'
# Models whose every validation column still improves at the last evaluation; every other
# model's columns were best at an earlier one. glf_mnist is a joint prior: its runs decode
# with its own autoencoder, so ae_mnist's flag must not reach their marker.
IMPROVING = {("autoencoder", "vq_mnist"), ("autoencoder", "ae_mnist"), ("prior", "glf_mnist")}
CEILING = {"fd_classifier": 50.0, "precision": 0.7, "recall": 0.6, "density": 0.875}


def _png(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (20, 30), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fd_of(i: int) -> float:
    return 100.0 + 10 * i  # run i of the targets gets this Fréchet distance


def train_log(improving: bool) -> str:
    """Every validation column a trainer writes; losses fall (ELBOs rise) to the end or not."""
    last3 = (2.0, 1.0) if improving else (1.0, 2.0)  # evaluations at steps 3 and 4
    rows = ["step,loss,val_mse,val_bits,val_elbo_nats,codebook_used", "1,2.0,,,,"]
    for step, v, codes in ((2, 3.0, 7), *zip((3, 4), last3, (8, 9), strict=True)):
        rows.append(f"{step},{1 / step},{v},{v},{-v},{codes}")
    return "\n".join(rows) + "\n"


def write_artifacts(p, root: Path) -> None:
    """Every input of the report job, plus optional files other stages write when enabled."""
    runs = list(p["targets"])
    for i, f in enumerate(report_inputs(p)):
        path = root / f
        path.parent.mkdir(parents=True, exist_ok=True)
        if f.endswith(".png"):
            _png(path, i)
        elif f.endswith("train_log.csv"):
            role = "autoencoder" if "/autoencoders/" in f else "prior"
            path.write_text(train_log((role, path.parent.name) in IMPROVING))
    for ae in p.target_autoencoders():
        metrics = {"val_psnr": 21.5, "codebook_used": 9, "train_time_s": 3.0, "device": HOSTILE}
        _json(root / paths.autoencoder(ae)["metrics"], metrics)
        cal = {
            "real_val_vs_train": {"fd_classifier": 5.0, "precision": 0.9, "recall": 0.8},
            "random_tokens": {"fd_classifier": 900.0, "precision": 0.1, "recall": 0.0},
        }
        _json(root / paths.calibration(ae)["metrics"], cal)
        recon = {"psnr": 20.0, "decoded_val_vs_train": {**CEILING, "protocol": {"n_fake": 10}}}
        _json(root / paths.reconstruction(ae)["metrics"], recon)
    for ds in p.target_datasets():
        manifest = {"source": "mnist5k", "counts": {"train": 8}, "sha256": {"train": "abc123"}}
        _json(root / paths.data(ds)["manifest"], manifest)
        _json(root / paths.classifier(ds)["metrics"], {"val_accuracy": 0.9})
    for prior in p.target_priors():
        metrics = {"val_bits_per_token": 3.25, "val_bound": "elbo", "train_time_s": 2.0}
        _json(root / paths.prior(prior)["metrics"], {**metrics, "device": "cpu"})
    for prior in [pr for pr in p.target_priors() if p.prior(pr)["kind"] == "absorbing"]:
        _json(root / paths.inpainting(prior)["stats"], {"n_images": 4})
        _json(root / paths.large_samples(prior)["stats"], {"n": 2})
    for i, run in enumerate(runs):
        r = p.run(run)
        stats = {
            "sampler": r["sampler"],
            "steps": r.get("steps", 1),
            "temperature": r.get("temperature", 1.0),
            "n_samples": 10,
            "seconds_per_image": 0.01 * (i + 1),
            "samples_per_s": 100.0 / (i + 1),
            "device": "cpu",
        }
        _json(root / paths.samples(run)["stats"], stats)
        ev = {"fd_classifier": fd_of(i), "precision": 0.5, "recall": 0.25, "protocol": {"k": 3}}
        for replicate, _ in p.replicates_of(run):  # equal scores: their mean is the run's
            _json(root / paths.evaluation(replicate)["metrics"], ev)
            if replicate != run:  # what the claims table reads at a held-out seed
                _json(root / paths.samples(replicate)["stats"], stats)
                prior = root / paths.prior(p.prior_of_run(replicate))["metrics"]
                _json(
                    prior,
                    json.loads((root / paths.prior(p.prior_of_run(run))["metrics"]).read_text()),
                )


@pytest.fixture(scope="module")
def report(tmp_path_factory, repo: Path) -> tuple:
    """The report built once for all tests here (artifact paths are relative to the cwd)."""
    tmp_path = tmp_path_factory.mktemp("report")
    p = load_params([SMOKE], root=repo)
    ds = p.target_datasets()[0]
    p.data["datasets"][ds]["path"] = HOSTILE  # a user-provided string that is also markup
    write_artifacts(p, tmp_path)
    first = p["targets"][0]
    # Optional artifacts of other stages: a new metric key, neighbours, reconstruction eval.
    ev_file = tmp_path / paths.evaluation(first)["metrics"]
    _json(ev_file, {**json.loads(ev_file.read_text()), "fid": 12.5, "kid_mean": 0.125})
    _png(tmp_path / f"results/eval/{first}/neighbours.png", 99)
    ae = p.target_autoencoders()[0]
    ae_eval = tmp_path / f"results/eval/autoencoders/{ae}"
    ae_eval.mkdir(parents=True, exist_ok=True)
    recon = json.loads((ae_eval / "metrics.json").read_text())
    _json(ae_eval / "metrics.json", {**recon, "lpips": 0.375, "psnr": 22.0})
    _png(ae_eval / "usage.png", 7)
    bench = tmp_path / f"results/benchmarks/train_prior/{p.target_priors()[0]}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text("s\th:m:s\tmax_rss\tcpu_time\n12.5\t0:00:12\t800.0\t20.0\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        build_report(p)
    finally:
        os.chdir(cwd)
    return p, tmp_path / "results/report"


def test_runs_table_has_every_run_metric_and_calibration_row(report):
    p, root = report
    table = pd.read_csv(root / "tables/runs.csv")
    runs = table[table["run"].isin(p["targets"])].set_index("run")
    assert list(runs.index) == list(p["targets"])
    for i, run in enumerate(p["targets"]):
        assert runs.loc[run, "fd_classifier"] == fd_of(i)
        assert runs.loc[run, "prior.val_bits_per_token"] == 3.25
        assert runs.loc[run, "ae.val_psnr"] == 21.5
        if p.autoencoder_of_prior(p.prior_of_run(run)) == p.target_autoencoders()[0]:
            assert runs.loc[run, "ae.recon_lpips"] == 0.375  # the reconstruction stage's file
    first = p["targets"][0]
    assert runs.loc[first, "fid"] == 12.5 and runs["fid"].isna().sum() == len(runs) - 1
    calibration = table[table["run"].str.startswith("calibration")]
    # Three reference rows per autoencoder, best to worst: floor, stage-1 ceiling, bad model.
    for ae in p.target_autoencoders():
        assert list(calibration[calibration["autoencoder"] == ae]["fd_classifier"]) == [
            5.0,
            50.0,
            900.0,
        ]
    # The bad-model row says what was decoded: random tokens, or N(0, I) latents.
    bad = calibration[calibration["fd_classifier"] == 900.0].set_index("autoencoder")["run"]
    continuous = {ae for ae in p.target_autoencoders() if p.autoencoder(ae)["kind"] != "vq"}
    assert continuous and set(bad.index) > continuous
    for ae, label in bad.items():
        assert ("N(0, I) latents" if ae in continuous else "random tokens") in label, (ae, label)
    assert "protocol" not in table and "prior.val_bound" not in table  # numbers only
    # Every run's FD (100 + 10 i) lies between its autoencoder's floor (5) and bad model (900).
    assert (runs["fd_vs_calibration"] == "between floor and bad model").all()
    assert calibration["fd_vs_calibration"].isna().all()


def test_fd_vs_calibration_names_each_side_of_the_scale():
    from twostage.report.collect import fd_vs_calibration

    assert fd_vs_calibration(50.0, 5.0, 900.0, "random tokens") == "between floor and bad model"
    assert fd_vs_calibration(901.0, 5.0, 900.0, "random tokens") == (
        "worse than random tokens (bad model)"
    )
    assert fd_vs_calibration(4.0, 5.0, 900.0, "random tokens") == "below the floor (real images)"
    assert fd_vs_calibration(900.0, 5.0, 900.0, "N(0, I) latents") == (
        "equal to N(0, I) latents (bad model)"
    )
    assert fd_vs_calibration(float("nan"), 5.0, 900.0, "random tokens") == "not finite"


def test_a_run_worse_than_the_bad_model_is_marked_in_the_report(tmp_path, repo, monkeypatch):
    # Bad models at FD 115: the runs with FD 100 + 10 i above it are marked, in words that
    # say what the bad model decoded, in the runs table of the page.
    from twostage.report.collect import convergence_table, runs_table

    p = load_params([SMOKE], root=repo)
    write_artifacts(p, tmp_path)
    for ae in p.target_autoencoders():
        cal = {
            "real_val_vs_train": {"fd_classifier": 5.0},
            "random_tokens": {"fd_classifier": 115.0},
        }
        _json(tmp_path / paths.calibration(ae)["metrics"], cal)
    monkeypatch.chdir(tmp_path)
    table = runs_table(p, convergence_table(p), "fd_classifier").set_index("run")
    continuous = {ae for ae in p.target_autoencoders() if p.autoencoder(ae)["kind"] != "vq"}
    for i, run in enumerate(p["targets"]):
        ae = p.autoencoder_of_prior(p.prior_of_run(run))
        bad_model = "N(0, I) latents" if ae in continuous else "random tokens"
        expected = (
            f"worse than {bad_model} (bad model)"
            if fd_of(i) > 115
            else "between floor and bad model"
        )
        assert table.loc[run, "fd_vs_calibration"] == expected, run
    assert len(p["targets"]) > 2  # so both kinds of row occur
    build_report(p)
    page = (tmp_path / "results/report/index.html").read_text()
    assert "worse than random tokens (bad model)" in page
    assert "worse than N(0, I) latents (bad model)" in page


def test_stage1_ceiling_row_once_per_autoencoder(report):
    p, root = report
    table = pd.read_csv(root / "tables/runs.csv")
    ceiling = table[table["run"] == CEILING_ROW].set_index("autoencoder")
    # VQ and continuous autoencoders alike, once each, with the numbers of its file.
    assert sorted(ceiling.index) == sorted(p.target_autoencoders())
    for key, value in CEILING.items():
        assert (ceiling[key] == value).all(), key
    assert ceiling["prior"].isna().all()  # a reference row: no run, no sweep figure
    for page in ("index.html", "report.md"):
        assert (root / page).read_text().count(CEILING_ROW) == len(p.target_autoencoders())


def test_models_still_improving_are_flagged(report):
    p, root = report
    conv = pd.read_csv(root / "tables/convergence.csv")
    # Every trained model has at least one validation curve with all its evaluations.
    models = {("autoencoder", ae) for ae in p.target_autoencoders()}
    models |= {("prior", pr) for pr in p.target_priors()}
    assert set(zip(conv["role"], conv["model"], strict=True)) == models
    assert (conv["n_evals"] == 3).all()
    flagged = conv[conv["still_improving"]]
    assert set(zip(flagged["role"], flagged["model"], strict=True)) == IMPROVING
    aes = pd.read_csv(root / "tables/autoencoders.csv").set_index("autoencoder")
    assert set(aes.index[aes["still_improving"]]) == {m for r, m in IMPROVING if r == "autoencoder"}

    runs = pd.read_csv(root / "tables/runs.csv").set_index("run")
    note = runs["convergence"].fillna("")
    for run in p["targets"]:
        prior = p.prior_of_run(run)
        ae = p.autoencoder_of_prior(prior)
        assert runs.loc[run, "prior.still_improving"] == (("prior", prior) in IMPROVING)
        assert runs.loc[run, "ae.still_improving"] == (("autoencoder", ae) in IMPROVING)
        expected = {"vq_mnist": "autoencoder vq_mnist (val_mse)", "glf_mnist": "prior glf_mnist"}
        want = expected.get(ae) or expected.get(prior)
        if want:
            assert note[run].startswith(MARKER) and want in note[run], (run, note[run])
        else:  # glf_regularized: its ae_mnist namesake still improves, but it has its own
            assert note[run] == "", (run, note[run])
    assert "autoencoder" not in note["glf"]
    # The ceiling row of a still-improving autoencoder carries the marker too.
    assert note[CEILING_ROW].str.startswith(MARKER).sum() == 2

    page = (root / "index.html").read_text()
    section = page.split('id="autoencoder-vq-mnist"')[1].split("<h")[0]
    assert MARKER in section
    assert MARKER not in page.split('id="autoencoder-rae-mnist"')[1].split("<h")[0]
    assert f"Prior glf_mnist: training loss and validation bound – {MARKER}" in page
    assert "Prior absorbing_mnist: training loss and validation bound<" in page
    assert MARKER in page.split('id="run-autoregressive"')[1].split("<h")[0]
    assert MARKER not in page.split('id="run-rae-gmm"')[1].split("<h")[0]


def test_sweep_csv_and_wall_times(report):
    p, root = report
    sweep = pd.read_csv(root / "plots/fd_vs_steps.csv")
    steps_runs = [r for r in p["targets"] if r.startswith("absorbing_steps")]
    assert sorted(sweep["run"]) == sorted(steps_runs) and list(sweep["steps"]) == [4, 16]
    times = pd.read_csv(root / "tables/wall_times.csv").set_index(["stage", "name"])
    prior = p.target_priors()[0]
    assert times.loc[("train_prior", prior), "seconds"] == 12.5  # benchmark file wins
    assert times.loc[("train_prior", prior), "source"] == "benchmark"
    other = p.target_priors()[1]
    assert times.loc[("train_prior", other), "seconds"] == 2.0  # the stage's own timer


def test_every_figure_exists_and_optional_images_appear(report):
    p, root = report
    page = (root / "index.html").read_text()
    srcs = [s.split('"')[0] for s in page.split('<img src="')[1:]]
    assert srcs and all((root / s).is_file() for s in srcs)
    for name in ("fd-vs-steps", "pr-vs-temperature", "quality-vs-time", "codebook-usage"):
        assert f"figures/{name}.png" in srcs
    assert f"figures/neighbours-{p['targets'][0]}.png" in srcs
    assert f"figures/usage-{p.target_autoencoders()[0]}.png" in srcs
    assert (root / "report.md").read_text().count("![") == len(srcs)
    for run in p["targets"]:
        assert f'id="run-{run.lower()}"'.replace("_", "-") in page  # a section per run


def test_user_strings_are_escaped(report):
    _, root = report
    page = (root / "index.html").read_text()
    assert "<script" not in page
    assert html.escape(HOSTILE) in page  # shown (params and devices), as text


def test_provenance_names_commit_data_and_stage_params(report):
    p, root = report
    page = (root / "index.html").read_text()
    assert "git_commit" in page and "abc123" in page  # dataset manifest hash
    assert "torch" in page and f"train_prior-{p.target_priors()[0]}" in page


def test_report_renders_in_a_real_browser(report, render_in_browser):
    p, root = report
    page = (root / "index.html").read_text()
    seen = render_in_browser(root / "index.html", width=1280)
    assert seen["viewport"] == 1280
    # Every picture of the page loaded (complete, naturalWidth > 0).
    assert seen["images"] == page.count("<img ") > 10 and seen["broken"] == []
    assert seen["tables"] >= 3
    assert seen["scripts"] == 1  # only the probe: no user string became a script
    # One headline table per autoencoder and the claims table, none wider than its column:
    # no sideways scrolling.
    captions = [t["caption"] for t in seen["headlines"]]
    assert len(captions) == len(p.target_autoencoders()) + 1
    assert captions[len(p.target_autoencoders())] == "Claims tested on held-out seeds"
    for table in seen["headlines"]:
        assert 0 < table["scroll"] <= table["client"], table


def test_claims_table_judges_the_smoke_claim(report):
    """Every replicate of a run scores its run's FD (fd_of), so the smoke claim's per-seed
    difference is the same at both seeds: a zero-width interval at fd_of(i) − fd_of(j) < 0."""
    p, root = report
    claims = pd.read_csv(root / "tables/claims.csv")
    [row] = claims.itertuples()
    targets = list(p["targets"])
    gap = fd_of(targets.index("absorbing_confidence")) - fd_of(targets.index("glf"))
    assert gap < 0
    assert (row.claim, row.mean, row.ci95_low, row.ci95_high) == (
        "absorbing_beats_glf",
        gap,
        gap,
        gap,
    )
    assert row.verdict == "supported" and row.held_out_seeds == "1 3"
    page = (root / "index.html").read_text()
    assert page.index('id="claims"') < page.index('id="intervals-and-replicates"')
    assert "absorbing_beats_glf" in (root / "report.md").read_text()


def test_browser_check_sees_a_headline_table_that_overflows(tmp_path, render_in_browser):
    # The check above can fail: 40 numeric columns cannot fit 1 280 px.
    from twostage.report.page import CompactTable, Section, render_html

    wide = pd.DataFrame([[f"{1000 + i}.123456" for i in range(40)]], columns=range(40))
    page = tmp_path / "wide.html"
    page.write_text(render_html("t", "", [Section("s", [CompactTable(wide, caption="c")])]))
    [table] = render_in_browser(page, width=1280)["headlines"]
    assert table["scroll"] > table["client"], table


def test_latent_scale_figure_draws_only_logs_with_nll_and_spread(tmp_path: Path):
    from twostage.report import figures

    logs = {}
    for name, cols in (("glf", "step,loss,nll,latent_std"), ("absorbing", "step,loss,val_bits")):
        logs[name] = tmp_path / f"{name}.csv"
        rows = [f"{s},1.0,{-s},{1 / s}" if name == "glf" else f"{s},1.0," for s in (1, 2, 3)]
        logs[name].write_text("\n".join([cols, *rows]) + "\n")
    assert figures.plot_latent_scale({"absorbing": logs["absorbing"]}, tmp_path) == []
    [figure] = figures.plot_latent_scale(logs, tmp_path)
    assert figure.src == "figures/latent-scale.png" and (tmp_path / "latent-scale.png").is_file()


def test_one_reconstruction_grid_per_autoencoder(report):
    p, root = report
    page = (root / "index.html").read_text()
    srcs = [s.split('"')[0] for s in page.split('<img src="')[1:]]
    for ae in p.target_autoencoders():
        assert srcs.count(f"figures/recon-{ae}.png") == 1
        assert f"figures/recon_grid-{ae}.png" not in srcs


def test_training_curves_skip_columns_without_values():
    log = pd.DataFrame(
        {
            "step": [1, 2],
            "loss": [1.0, 0.5],
            "val_mse": [float("nan"), 0.1],
            "val_elbo_nats": [float("nan"), float("nan")],  # a plain autoencoder has none
        }
    )
    assert figures._value_columns(log) == (["loss"], ["val_mse"])


# The headline on a synthetic runs table whose FD column is not the smoke profile's.
FD = "fd_inception"
FLOOR, BAD = CALIBRATION_ROWS["real_val_vs_train"], CALIBRATION_ROWS["random_tokens"]
BAD_CONTINUOUS = CONTINUOUS_CALIBRATION_ROWS["random_tokens"]


def _runs_frame() -> pd.DataFrame:
    """Trained runs of two autoencoders; every reference row appears twice for vq, as a
    runs table that repeats the floor per autoencoder (and replicated rows) would."""

    def run(name, prior, ae, fd, **extra):
        row = {"run": name, "prior": prior, "prior_kind": "absorbing", "autoencoder": ae}
        return {**row, "sampler": "random", "steps": 8.0, "temperature": 0.8, FD: fd, **extra}

    def ref(label, ae, fd):
        return {"run": label, "autoencoder": ae, FD: fd, "precision": 0.9}

    rows = [
        run("slow", "absorbing", "vq", 30.04, precision=0.8249, **{BITS: 3.347}),
        run("good", "absorbing", "vq", 20.0, precision=0.8651, samples_per_s=442.87),
        run("diverged", "absorbing", "vq", float("nan")),
        {**run("glf", "glf_p", "ae", 50.0), "prior_kind": "glf", BITS: -0.211},
        ref(FLOOR, "vq", 2.0),
        ref(CEILING_ROW, "vq", 10.0),
        ref(BAD, "vq", 100.0),
        ref(FLOOR, "ae", 2.0),
        ref(CEILING_ROW, "ae", 60.0),
        ref(BAD_CONTINUOUS, "ae", 90.0),
    ]
    return pd.DataFrame(rows + rows[4:7])


def test_headline_lists_each_reference_once_sorted_by_fd_with_the_best_trained_run():
    runs = _runs_frame()
    vq = headline_rows(runs, "vq", FD)
    assert list(vq["run"]) == [FLOOR, CEILING_ROW, "good", "slow", BAD, "diverged"]
    assert list(vq["best"]) == [False, False, True, False, False, False]  # not the floor
    ae = headline_rows(runs, "ae", FD)
    assert list(ae["run"]) == [FLOOR, "glf", CEILING_ROW, BAD_CONTINUOUS]
    assert ae.loc[ae["best"], "run"].tolist() == ["glf"]  # even above the ceiling

    [t_vq, t_ae] = headline_tables(runs, ["vq", "ae"], FD)
    assert t_vq.autoencoder == "vq" and t_vq.best == 2 and t_vq.references == [0, 1, 4]
    assert (t_ae.best, t_ae.references, t_ae.joint, t_vq.joint) == (1, [0, 2, 3], True, False)
    frame = t_vq.frame
    assert list(frame.columns) == [
        "run", "prior", "sampler", "±", "steps", "τ", "FD", "prec", "rec", "dens", "cov",
        "bits", "img/s",
    ]  # fmt: skip
    assert list(frame["run"]) == [
        "floor: real images",
        "ceiling: stage 1",
        f"{BEST} good",
        "slow",
        "bad: random tokens",
        "diverged",
    ]
    assert list(frame["FD"]) == ["2.0", "10.0", "20.0", "30.0", "100.0", ""]
    assert list(frame["prec"])[:4] == ["0.90", "0.90", "0.87", "0.82"]
    assert frame.loc[3, "bits"] == "3.35/tok" and frame.loc[2, "img/s"] == "443"
    assert frame.loc[0, "prior"] == frame.loc[0, "steps"] == frame.loc[0, "rec"] == ""
    assert t_ae.frame.loc[1, "bits"] == "-0.21/dim"  # a continuous prior's density
    assert t_ae.frame.loc[3, "run"] == "bad: N(0, I) latents"


def test_headline_shows_an_interval_and_its_kind_where_the_runs_table_has_one():
    runs = _runs_frame()
    runs[f"{FD}_ci95"] = float("nan")
    runs["interval_kind"] = ""
    runs["n_replicates"] = pd.array([pd.NA] * len(runs), dtype="Int64")
    good, slow = runs["run"] == "good", runs["run"] == "slow"
    runs.loc[good, [f"{FD}_ci95", "precision_ci95"]] = [1.26, 0.013]
    runs.loc[good, ["interval_kind", "n_replicates"]] = [replicates.REPLICATES, 3]
    runs.loc[slow, [f"{FD}_ci95", "interval_kind", "n_replicates"]] = [
        0.44,
        replicates.SINGLE_RUN,
        1,
    ]
    frame = headline_tables(runs, ["vq"], FD)[0].frame.set_index("run")
    assert frame.loc[f"{BEST} good", "FD"] == "20.0 ± 1.3"
    assert frame.loc[f"{BEST} good", "prec"] == "0.87 ± 0.01"
    assert frame.loc[f"{BEST} good", "±"] == "3 seeds"
    assert frame.loc["slow", "FD"] == "30.0 ± 0.4"
    assert frame.loc["slow", "±"] == "samples"
    assert frame.loc["diverged", "±"] == frame.loc["floor: real images", "±"] == ""
    rows = runs.set_index("run")
    assert fd_text(rows.loc["good"], FD) == "20.0 ± 1.3 (3 seeds)"
    assert fd_text(rows.loc["slow"], FD) == "30.0 ± 0.4 (samples)"
    assert fd_text(rows.loc["glf"], FD) == "50.0"  # no interval: the plain value
    row = pd.Series({"fd": 3.0})
    assert with_interval(row, "fd", lambda v: f"{v:.1f}") == "3.0"
    assert with_interval(row, "precision", lambda v: f"{v:.1f}") == ""
    # the legend names both kinds and the column that tells them apart
    text = legend(FD, joint=False)
    assert "± column names: N seeds, the Student-t interval" in text
    assert "samples, a single run's sampling interval" in text
    assert "over replicates." not in text


def test_headline_comes_first_with_a_gallery_and_the_full_table_folded(report):
    p, root = report
    page = (root / "index.html").read_text()
    order = [
        page.index('id="headline-'),
        page.index('class="gallery"'),
        page.index('id="comparisons"'),
        page.index('id="all-runs"'),
        page.index('id="provenance"'),
    ]
    assert order == sorted(order)
    headline = page.split('id="claims"')[0]  # the claims table comes after the headlines
    tables = headline.split('<table class="headline">')[1:]
    assert len(tables) == len(p.target_autoencoders())
    for table in tables:
        table = table.split("</table>")[0]
        assert table.count("floor: real images") == table.count("ceiling: stage 1") == 1
        assert table.count("bad: ") == 1 and table.count(BEST) == 1
        assert table.count('<tr class="best">') == 1 and table.count('<tr class="ref">') == 3
    # The gallery: one grid per run, best first, run name and FD under each.
    gallery = page.split('class="gallery"')[1].split("</div>")[0]
    captions = [c.split("</figcaption>")[0] for c in gallery.split("<figcaption>")[1:]]
    ranked = sorted(enumerate(p["targets"]), key=lambda ir: fd_of(ir[0]))
    # (a run with replicates in the default params also shows its interval: "FD x ± h")
    assert [c.split(" ± ")[0] for c in captions] == [
        f"{run} · FD {fd_of(i):.1f}" for i, run in ranked
    ]
    replicated = set(p.data.get("replicates", {})) & set(p["targets"])
    assert {c.split(" · ")[0] for c in captions if " ± " in c} <= replicated
    full = page.split('id="all-runs"')[1].split("<h2")[0]
    assert "<details><summary>Runs table:" in full and 'href="tables/runs.csv"' in full
    # The Markdown headline keeps the formatted numbers (one decimal for FD, two for PRDC).
    md = (root / "report.md").read_text().split("## Headline")[1].split("## Comparisons")[0]
    assert " 5.0 |" in md and f" {fd_of(0):.1f} |" in md and " 0.90 |" in md


def test_the_frontier_is_the_runs_no_other_beats_on_cost_and_fd():
    from twostage.report.figures import pareto_front

    cost = pd.Series([1.0, 2.0, 2.0, 4.0, 8.0, 3.0], index=list("abcdef"))
    fd = pd.Series([30.0, 20.0, 25.0, 22.0, 10.0, 20.0], index=list("abcdef"))
    # c: as slow as b and worse; d: slower than f and worse; f: as good as b, slower
    assert list(pareto_front(cost, fd)) == ["a", "b", "e"]
