"""Report stage: one HTML page and one Markdown file for the whole experiment set.

Everything shown is read from the artifacts of the DAG (metrics.json files,
grids, training logs, benchmark files); the report computes nothing that could
disagree with them. Pictures are PNG files under ``figures/`` and tables CSV
files under ``tables/``, next to ``index.html``, so the folder opens from disk
and moves as a whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from twostage import paths
from twostage.artifacts import atomic_path, make_dirs
from twostage.config import Params
from twostage.kinds import CONTINUOUS_AUTOENCODERS
from twostage.plan import editing_priors
from twostage.report import claims, collect, convergence, figures, headline, replicates
from twostage.report.figures import Figure, copy_image
from twostage.report.page import (
    CompactTable,
    Gallery,
    Section,
    Table,
    Text,
    render_html,
    render_markdown,
)
from twostage.report.provenance import provenance, stage_params

TITLE = "twostage report"


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _yaml(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)


def _intro(p: Params, machines: str) -> str:
    ev, ext = p["evaluation"], p["evaluation"]["extractor"]
    note = (
        "the penultimate layer of a CNN trained on the dataset's labels; Inception weights are "
        f"not used, so fd_{ext} is not comparable to published FIDs"
        if ext == "classifier"
        else "see the protocol in each run's metrics"
    )
    return (
        f"Feature extractor: {ext} ({note}). Each run: {ev['n_samples']} samples; FD against all "
        f"training images, PRDC (k={ev['nearest_k']}) against an equal-sized training subset. "
        "First, per dataset, the runs of each autoencoder ranked by FD between its floor and "
        f"its bad model, and their samples; every other number follows. {machines}"
    )


def _all_runs_text() -> str:
    return (
        "Every column of every run. The calibration rows give the scale: a good model sits "
        "near the floor, far from the bad model (decoded random tokens, or N(0, I) latents for "
        "a continuous autoencoder); the stage-1 ceiling row scores the autoencoder's "
        "reconstructions of the same validation images as the floor, what stage 1 costs "
        "before any prior; the fd_vs_calibration column says where each run sits, and names a "
        "run worse than the bad model. Columns prefixed prior. and ae. come from the run's "
        f"prior and autoencoder. {convergence.MARKER} marks a model whose validation curve had "
        "not settled when its training stopped (see Convergence)."
    )


def _convergence_text() -> str:
    return (
        f"One row per validation curve of each trained model. {convergence.MARKER} (column "
        "still_improving) when the last evaluation is the best of all and beats the best "
        f"evaluation before the last {convergence.TAIL_FRACTION:.0%} of the evaluations by more "
        f"than {convergence.TOLERANCE:.0%} of the curve's range (window_improvement > "
        f"{convergence.TOLERANCE:g} × range). A model with a single evaluation (a fitted GMM, "
        "a scored VAE prior) is never flagged. The marker is about the curves that pick the "
        "kept checkpoint (decides_checkpoint): for a token prior with select_by: sample_fd "
        "its sample FD, whose best evaluation is kept; its validation bound is listed beside."
    )


def _flagged(conv: pd.DataFrame, role: str, model: str) -> str:
    """The marker and the improving columns, to append to a caption; "" if none improved."""
    cols = collect.improving_curves(conv, role, model)
    return f" – {convergence.MARKER} ({', '.join(cols)})" if cols else ""


def _autoencoder_sections(
    p: Params, conv: pd.DataFrame, fig_dir: Path
) -> tuple[list[Section], list[Figure]]:
    """One subsection per autoencoder with every picture it has; plus its training curve."""
    sections, curves = [], []
    for ae in p.target_autoencoders():
        extra = paths.reconstruction(ae)  # a separate stage: may not exist yet
        # The evaluation's grid shows the same originals/reconstructions layout as the
        # training stage's: show one of them, the evaluation's when it exists.
        if collect.optional(extra["grid"]):
            recon, recon_caption = extra["grid"], "the evaluation images"
        else:
            recon, recon_caption = paths.autoencoder(ae)["recon"], "validation images"
        continuous = p.autoencoder(ae)["kind"] in CONTINUOUS_AUTOENCODERS
        note = collect.improving_note(conv, [("autoencoder", ae)])
        blocks: list = [Text(note)] if note else []
        blocks += [
            copy_image(
                recon,
                fig_dir,
                f"recon-{ae}.png",
                f"Autoencoder {ae}: {recon_caption}, originals (odd rows) and "
                "reconstructions (even rows)",
            ),
            copy_image(
                paths.calibration(ae)["grid"],
                fig_dir,
                f"random-tokens-{ae}.png",
                collect.bad_model_caption(p, ae),
            ),
        ]
        if collect.optional(extra["usage"]):
            usage_caption = (
                "spread (std over validation images) of each latent dimension"
                if continuous
                else "how often each code is used"
            )
            blocks.append(
                copy_image(extra["usage"], fig_dir, f"usage-{ae}.png", f"{ae}: {usage_caption}")
            )
        sections.append(Section(f"Autoencoder {ae}", blocks, level=3))
        dst = fig_dir / f"curve-{ae}.png"
        if figures.plot_curve(paths.autoencoder(ae)["curve"], dst, ae):
            caption = f"Autoencoder {ae}: training loss and validation" + _flagged(
                conv, "autoencoder", ae
            )
            curves.append(Figure(caption, f"figures/{dst.name}"))
    return sections, curves


def _prior_figures(
    p: Params, conv: pd.DataFrame, fig_dir: Path
) -> tuple[list[Figure], list[Figure]]:
    """(inpainting and large-sample grids, training curves) of the priors."""
    grids, curves = [], []
    for prior in editing_priors(p):
        grids.append(
            copy_image(
                paths.inpainting(prior)["grid"],
                fig_dir,
                f"inpainting-{prior}.png",
                f"Prior {prior}: inpainting (original, masked input, completion)",
            )
        )
        grids.append(
            copy_image(
                paths.large_samples(prior)["grid"],
                fig_dir,
                f"large-{prior}.png",
                f"Prior {prior}: samples larger than the training grid (windowed denoising)",
            )
        )
    for prior in p.target_priors():
        dst = fig_dir / f"curve-{prior}.png"
        if figures.plot_curve(paths.prior(prior)["curve"], dst, prior):
            caption = f"Prior {prior}: training loss and validation bound" + _flagged(
                conv, "prior", prior
            )
            curves.append(Figure(caption, f"figures/{dst.name}"))
    return grids, curves


def _run_sections(p: Params, table: pd.DataFrame, fig_dir: Path) -> list[Section]:
    """Per run: its settings, every number measured on it, its samples and neighbours."""
    sections = []
    for run in p["targets"]:
        row = table[table["run"] == run].iloc[0].dropna()
        note = row.pop("convergence") if "convergence" in row else ""  # a line of its own
        metrics = pd.DataFrame({"metric": row.index, "value": row.values})
        blocks: list = [Text(note)] if note else []
        caption = f"Samples of run {run}"
        if p.prior(p.prior_of_run(run))["condition"] == "class":
            caption += ": one row per class asked for, in class order (sample/sampler.py)"
        blocks += [
            Text(_yaml({"settings": p.written(f"runs.{run}")}), code=True),
            Table(metrics),
            copy_image(paths.samples(run)["grid"], fig_dir, f"samples-{run}.png", caption),
        ]
        if collect.optional(paths.neighbours(run)["grid"]):
            blocks.append(
                copy_image(
                    paths.neighbours(run)["grid"],
                    fig_dir,
                    f"neighbours-{run}.png",
                    f"Run {run}: samples and their nearest training images",
                )
            )
        sections.append(Section(f"Run {run}", blocks, level=3))
    return sections


def _headline_sections(p: Params, runs: pd.DataFrame, fd_col: str, fig_dir: Path) -> list[Section]:
    """Per dataset: one ranked table per autoencoder, then every run's samples side by side."""
    sections = []
    for ds in p.target_datasets():
        aes = [ae for ae in p.target_autoencoders() if p.dataset_of_autoencoder(ae) == ds]
        tables = headline.headline_tables(runs, aes, fd_col)
        blocks: list = [
            CompactTable(
                t.frame,
                caption=f"Autoencoder {t.autoencoder} ({p.autoencoder(t.autoencoder)['kind']})",
                text_columns=("run", "prior", "sampler", headline.KIND),
                best=t.best,
                muted=t.references,
            )
            for t in tables
        ]
        blocks.append(Text(headline.legend(fd_col, joint=any(t.joint for t in tables))))
        ds_runs = runs[runs["run"].isin(p["targets"]) & runs["autoencoder"].isin(aes)]
        if fd_col in ds_runs:
            ds_runs = ds_runs.sort_values(fd_col, kind="stable", na_position="last")
        gallery = [
            copy_image(
                paths.samples(row["run"])["grid"],
                fig_dir,
                f"samples-{row['run']}.png",
                f"{row['run']} · FD {headline.fd_text(row, fd_col)}",
            )
            for _, row in ds_runs.iterrows()
        ]
        if gallery:
            blocks.append(Gallery(gallery))
        sections.append(Section(f"Headline: {ds}", blocks))
    return sections


def build_report(p: Params) -> str:
    out = paths.report()
    root = Path(out["html"]).parent
    fig_dir, tab_dir = root / "figures", root / "tables"
    make_dirs(fig_dir)
    fd_col = f"fd_{p['evaluation']['extractor']}"

    conv = collect.convergence_table(p)
    runs = collect.runs_table(p, conv, fd_col)
    runs, intervals = replicates.add_to_report(p, runs, tab_dir, fd_col, _write_csv)
    judged = claims.section(p, tab_dir, _write_csv)  # None without claims
    aes = collect.autoencoders_table(p, conv)
    times = collect.wall_times(p)
    sweep = figures.fd_vs_steps_rows(runs, fd_col)
    stages = stage_params(p)
    prov = provenance(p)
    _write_csv(runs, Path(out["table"]))
    _write_csv(aes, tab_dir / "autoencoders.csv")
    _write_csv(conv, tab_dir / "convergence.csv")
    _write_csv(times, tab_dir / "wall_times.csv")
    _write_csv(sweep, Path(out["fd_vs_steps"]))

    comparisons = figures.plot_sweeps(runs, fd_col, fig_dir)
    comparisons += figures.plot_guidance(runs, fd_col, fig_dir)
    comparisons += figures.plot_quality_vs_time(runs, fd_col, fig_dir)
    comparisons += figures.plot_codebook_usage(
        {ae: Path(paths.autoencoder(ae)["curve"]) for ae in p.target_autoencoders()}, fig_dir
    )
    comparisons += figures.plot_latent_scale(
        {prior: Path(paths.prior(prior)["curve"]) for prior in p.target_priors()}, fig_dir
    )
    ae_sections, ae_curves = _autoencoder_sections(p, conv, fig_dir)
    prior_grids, prior_curves = _prior_figures(p, conv, fig_dir)

    sections = [
        *_headline_sections(p, runs, fd_col, fig_dir),
        *([judged] if judged else []),
        intervals,
        Section("Comparisons", comparisons or [Text("No sweep in the targets varies a setting.")]),
        Section(
            "All runs",
            [
                Text(_all_runs_text()),
                Table(
                    runs,
                    csv="tables/runs.csv",
                    collapsed=f"Runs table: {len(runs)} rows × {len(runs.columns)} columns",
                ),
            ],
        ),
        Section("Autoencoders", [Table(aes, csv="tables/autoencoders.csv")]),
        *ae_sections,
        Section(
            "Convergence",
            [Text(_convergence_text()), Table(conv, csv="tables/convergence.csv")],
        ),
        Section("Training curves", ae_curves + prior_curves),
        Section("Priors: inpainting and large samples", prior_grids),
        Section("Per run", []),
        *_run_sections(p, runs, fig_dir),
        Section("Wall time per stage", [Table(times, csv="tables/wall_times.csv")]),
        Section(
            "Provenance",
            [
                Text(_yaml(prov), code=True),
                Text("Params each stage reads (a change in them reruns the stage):"),
                Text(_yaml(stages), code=True),
                Text("All params, merged:"),
                Text(_yaml(p.data), code=True),
            ],
        ),
    ]
    intro = _intro(p, prov["machines"])  # the CPUs, read once for provenance
    with atomic_path(out["html"]) as tmp:
        tmp.write_text(render_html(TITLE, intro, sections))
    with atomic_path(out["markdown"]) as tmp:
        tmp.write_text(render_markdown(TITLE, intro, sections))
    return out["html"]
