"""Report stage: one HTML page and one Markdown file for the whole experiment set.

Everything shown is read from the artifacts of the DAG (metrics.json files,
grids, training logs); the report computes nothing that could disagree with them.
Images are copied next to the report, so ``index.html`` opens from disk.
"""

from __future__ import annotations

import html
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from twostage import paths  # noqa: E402
from twostage.artifacts import atomic_path, read_json  # noqa: E402
from twostage.config import Params  # noqa: E402
from twostage.plan import absorbing_priors  # noqa: E402

PACKAGES = ("torch", "torchvision", "numpy", "snakemake", "dvc", "scikit-learn", "pandas")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": status not in ("", "unknown"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def runs_table(p: Params) -> pd.DataFrame:
    """One row per sampling run plus the calibration rows of each autoencoder."""
    ext = p["evaluation"]["extractor"]
    rows = []
    for run in p["targets"]:
        prior = p.prior_of_run(run)
        ae = p.autoencoder_of_prior(prior)
        ev = read_json(paths.evaluation(run)["metrics"])
        stats = read_json(paths.samples(run)["stats"])
        prior_m = read_json(paths.prior(prior)["metrics"])
        ae_m = read_json(paths.autoencoder(ae)["metrics"])
        rows.append(
            {
                "run": run,
                "prior": prior,
                "autoencoder": ae,
                "sampler": stats["sampler"],
                "steps": stats["steps"],
                "temperature": stats["temperature"],
                f"fd_{ext}": ev[f"fd_{ext}"],
                **{k: ev[k] for k in ("precision", "recall", "density", "coverage")},
                "val_bits_per_token": prior_m["val_bits_per_token"],
                "val_bound": prior_m["val_bound"],
                "recon_psnr": ae_m["val_psnr"],
                "samples_per_s": stats["samples_per_s"],
                "s_per_image": stats["seconds_per_image"],
            }
        )
    for ae in p.target_autoencoders():
        cal = read_json(paths.calibration(ae)["metrics"])
        labels = {
            "real_val_vs_train": "calibration: real validation images (floor)",
            "random_tokens": "calibration: decoded random tokens (bad model)",
        }
        for key, label in labels.items():
            m = cal[key]
            rows.append(
                {
                    "run": label,
                    "autoencoder": ae,
                    f"fd_{ext}": m[f"fd_{ext}"],
                    **{k: m[k] for k in ("precision", "recall", "density", "coverage")},
                }
            )
    return pd.DataFrame(rows)


def _save(fig, out_png: Path) -> None:
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _groups_varying(runs: pd.DataFrame, varying: str, fixed: list[str]) -> list:
    """(key, rows) of every group of runs sharing ``fixed`` in which ``varying`` takes 2+ values."""
    return [(key, g) for key, g in runs.groupby(fixed) if g[varying].nunique() > 1]


def plot_sweeps(table: pd.DataFrame, fd_col: str, fig_dir: Path) -> list[tuple[str, str]]:
    """FD vs sampling steps and precision–recall vs temperature, for every group that varies."""
    runs = table.dropna(subset=["prior"])
    figures = []
    by_steps = _groups_varying(runs, "steps", fixed=["prior", "sampler", "temperature"])
    if by_steps:
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        for (prior, sampler, temp), g in by_steps:
            g = g.sort_values("steps")
            ax.plot(g["steps"], g[fd_col], marker="o", label=f"{prior} ({sampler}, τ={temp:g})")
        ax.set(
            xscale="log",
            xlabel="sampling steps (network calls per sample)",
            ylabel=fd_col,
            title=f"{fd_col} vs sampling steps",
        )
        ticks = sorted({int(s) for _, g in by_steps for s in g["steps"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])  # plain step counts, not 2×10⁰
        ax.minorticks_off()
        ax.legend(fontsize=7)
        _save(fig, fig_dir / "fd-vs-steps.png")
        figures.append(
            (f"{fd_col} against the number of sampling steps", "figures/fd-vs-steps.png")
        )
    by_temp = _groups_varying(runs, "temperature", fixed=["prior", "sampler", "steps"])
    if by_temp:
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        for (prior, sampler, steps), g in by_temp:
            g = g.sort_values("temperature")
            ax.plot(
                g["recall"],
                g["precision"],
                marker="o",
                label=f"{prior} ({sampler}, {int(steps)} steps)",
            )
            for _, row in g.iterrows():
                ax.annotate(
                    f"τ={row['temperature']:g}", (row["recall"], row["precision"]), fontsize=7
                )
        ax.set(xlabel="recall", ylabel="precision", title="precision–recall vs temperature")
        ax.legend(fontsize=7)
        _save(fig, fig_dir / "pr-vs-temperature.png")
        figures.append(
            ("Precision and recall as the temperature τ changes", "figures/pr-vs-temperature.png")
        )
    return figures


def plot_curve(csv_path: str, out_png: Path, title: str, train_col: str, val_col: str) -> None:
    log = pd.read_csv(csv_path)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(log["step"], log[train_col], lw=0.8)
    # Continuous priors' NLLs of real-valued latents can be negative: no log scale then.
    scale = "log" if (log[train_col] > 0).all() else "linear"
    axes[0].set(title=f"{title}: training {train_col}", xlabel="step", yscale=scale)
    val = log.dropna(subset=[val_col])
    axes[1].plot(val["step"], val[val_col], marker="o")
    axes[1].set(title=f"{title}: {val_col}", xlabel="step")
    _save(fig, out_png)


def _figure_files(p: Params, fig_dir: Path) -> list[tuple[str, str]]:
    """Copy/draw every picture into the report folder; return (caption, relative path)."""
    figures: list[tuple[str, str]] = []
    priors, aes = p.target_priors(), p.target_autoencoders()
    for run in p["targets"]:
        dst = fig_dir / f"samples-{run}.png"
        shutil.copyfile(paths.samples(run)["grid"], dst)
        figures.append((f"Samples of run {run}", f"figures/{dst.name}"))
    for ae in aes:
        dst = fig_dir / f"recon-{ae}.png"
        shutil.copyfile(paths.autoencoder(ae)["recon"], dst)
        figures.append(
            (
                f"Autoencoder {ae}: validation originals (odd rows), reconstructions (even rows)",
                f"figures/{dst.name}",
            )
        )
        dst = fig_dir / f"random-tokens-{ae}.png"
        shutil.copyfile(paths.calibration(ae)["grid"], dst)
        figures.append(
            (f"Autoencoder {ae}: decoded uniformly random tokens", f"figures/{dst.name}")
        )
        dst = fig_dir / f"curve-{ae}.png"
        plot_curve(paths.autoencoder(ae)["curve"], dst, ae, "loss", "val_psnr")
        figures.append(
            (f"Autoencoder {ae}: training loss and validation PSNR", f"figures/{dst.name}")
        )
    for prior in absorbing_priors(p):
        for label, art in (("inpainting", paths.inpainting), ("large", paths.large_samples)):
            dst = fig_dir / f"{label}-{prior}.png"
            shutil.copyfile(art(prior)["grid"], dst)
            caption = (
                f"Prior {prior}: inpainting (original, masked input, completion)"
                if label == "inpainting"
                else f"Prior {prior}: samples larger than the training grid (windowed denoising)"
            )
            figures.append((caption, f"figures/{dst.name}"))
    for prior in priors:
        dst = fig_dir / f"curve-{prior}.png"
        plot_curve(paths.prior(prior)["curve"], dst, prior, "loss", "val_bits")
        figures.append(
            (
                f"Prior {prior}: training loss and validation ELBO (bits/token)",
                f"figures/{dst.name}",
            )
        )
    return figures


def wall_times(p: Params) -> pd.DataFrame:
    priors, aes = p.target_priors(), p.target_autoencoders()
    rows = []
    for ae in aes:
        m = read_json(paths.autoencoder(ae)["metrics"])
        rows.append(
            {
                "stage": f"train_autoencoder {ae}",
                "seconds": m["train_time_s"],
                "device": m["device"],
            }
        )
    for prior in priors:
        m = read_json(paths.prior(prior)["metrics"])
        rows.append(
            {"stage": f"train_prior {prior}", "seconds": m["train_time_s"], "device": m["device"]}
        )
    for run in p["targets"]:
        m = read_json(paths.samples(run)["stats"])
        rows.append(
            {
                "stage": f"sample {run}",
                "seconds": m["n_samples"] * m["seconds_per_image"],
                "device": m["device"],
            }
        )
    return pd.DataFrame(rows)


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    return df.round(4).astype(object).where(df.notna(), "")


def build_report(p: Params) -> str:
    out = paths.report()
    root = Path(out["html"]).parent
    fig_dir = root / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    table = runs_table(p)
    times = wall_times(p)
    figures = plot_sweeps(table, f"fd_{p['evaluation']['extractor']}", fig_dir)
    figures += _figure_files(p, fig_dir)
    prov = provenance()
    ext = p["evaluation"]["extractor"]
    ev = p["evaluation"]

    with atomic_path(out["table"]) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(root / "tables" / "wall_times.csv") as tmp:
        times.to_csv(tmp, index=False)

    intro = (
        f"Feature extractor: <b>{html.escape(ext)}</b> (penultimate layer of a CNN trained on the "
        f"dataset's labels; Inception weights are not used, so <code>fd_{html.escape(ext)}</code> "
        f"is not comparable to published FIDs). Each run: {ev['n_samples']} samples; FD against "
        f"all training images, PRDC (k={ev['nearest_k']}) against an equal-sized training subset. "
        "The calibration rows give the scale: a good model sits near the floor, far from "
        "random tokens."
    )
    params_yaml = yaml.safe_dump(p.data, sort_keys=False)
    body = [
        "<h1>twostage report</h1>",
        f"<p>{intro}</p>",
        "<h2>Runs</h2>",
        _fmt(table).to_html(index=False, escape=True, border=0, classes="metrics"),
        "<h2>Figures</h2>",
        *(
            f'<figure><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for cap, src in figures
        ),
        "<h2>Wall time per stage</h2>",
        _fmt(times).to_html(index=False, escape=True, border=0),
        "<h2>Provenance</h2>",
        f"<pre>{html.escape(yaml.safe_dump(prov, sort_keys=False))}</pre>",
        f"<p>Params files: {html.escape(', '.join(p.files))}</p>",
        f"<pre>{html.escape(params_yaml)}</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:90%}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
        "figure{display:inline-block;margin:1em;vertical-align:top}img{image-rendering:pixelated}"
        "figcaption{font-size:85%;max-width:420px}"
    )
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>twostage report</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    with atomic_path(out["html"]) as tmp:
        tmp.write_text(page)

    md = [
        "# twostage report",
        "",
        f"Feature extractor `{ext}` (trained on the dataset's labels; not comparable to published "
        f"FIDs). {ev['n_samples']} samples per run; PRDC k={ev['nearest_k']}.",
        "",
        "## Runs",
        "",
        _fmt(table).to_markdown(index=False),  # tabulate comes with snakemake
        "",
        "## Figures",
        "",
        *(f"![{cap}]({src})\n\n{cap}\n" for cap, src in figures),
        "## Wall time per stage",
        "",
        _fmt(times).to_markdown(index=False),
        "",
        "## Provenance",
        "",
        "```yaml",
        yaml.safe_dump(prov, sort_keys=False).rstrip(),
        "```",
        "",
        "```yaml",
        params_yaml.rstrip(),
        "```",
        "",
    ]
    with atomic_path(out["markdown"]) as tmp:
        tmp.write_text("\n".join(md))
    return out["html"]
