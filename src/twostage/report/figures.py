"""The report's pictures: comparison plots drawn from the tables, curves and copied grids.

Every function returns :class:`Figure` records (caption + path relative to the
report folder); the pictures themselves are PNG files under ``figures/``, so the
page opens from disk and the files can be reused in slides.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from twostage.artifacts import atomic_path, verify  # noqa: E402


@dataclass
class Figure:
    caption: str
    src: str  # relative to the report folder


def _save(fig, out_png: Path) -> None:
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def copy_image(src: str | Path, fig_dir: Path, name: str, caption: str) -> Figure:
    """Copy an artifact's picture next to the report (relative links survive moving the folder)."""
    verify(src)
    with atomic_path(fig_dir / name) as tmp:
        shutil.copyfile(src, tmp)
    return Figure(caption, f"{fig_dir.name}/{name}")


def _groups_varying(runs: pd.DataFrame, varying: str, fixed: list[str]) -> list:
    """(key, rows) of every group of runs sharing ``fixed`` in which ``varying`` takes 2+ values."""
    if not {varying, *fixed} <= set(runs.columns):
        return []
    return [(key, g) for key, g in runs.groupby(fixed) if g[varying].nunique() > 1]


def fd_vs_steps_rows(table: pd.DataFrame, fd_col: str) -> pd.DataFrame:
    """The runs of every steps sweep, for the figure and for ``dvc plots`` (one CSV)."""
    runs = table.dropna(subset=["prior"]) if "prior" in table else table.iloc[:0]
    groups = _groups_varying(runs, "steps", fixed=["prior", "sampler", "temperature"])
    cols = ["run", "prior", "sampler", "temperature", "steps", fd_col]
    if not groups or fd_col not in runs:
        return pd.DataFrame(columns=cols)
    rows = pd.concat([g for _, g in groups])[cols]
    return rows.sort_values(["prior", "sampler", "temperature", "steps"])


def plot_sweeps(table: pd.DataFrame, fd_col: str, fig_dir: Path) -> list[Figure]:
    """FD vs sampling steps and precision–recall vs temperature, for every group that varies."""
    runs = table.dropna(subset=["prior"]) if "prior" in table else table.iloc[:0]
    figures = []
    by_steps = _groups_varying(runs, "steps", fixed=["prior", "sampler", "temperature"])
    if by_steps and fd_col in runs:
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
            Figure(f"{fd_col} against the number of sampling steps", "figures/fd-vs-steps.png")
        )
    by_temp = _groups_varying(runs, "temperature", fixed=["prior", "sampler", "steps"])
    if by_temp and {"precision", "recall"} <= set(runs.columns):
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        for (prior, sampler, steps), g in by_temp:
            g = g.sort_values("temperature")
            ax.plot(
                g["recall"],
                g["precision"],
                marker="o",
                label=f"{prior} (ancestral)"  # continuous: one draw, no steps
                if sampler == "ancestral"
                else f"{prior} ({sampler}, {int(steps)} steps)",
            )
            for _, row in g.iterrows():
                ax.annotate(
                    f"τ={row['temperature']:g}", (row["recall"], row["precision"]), fontsize=7
                )
        ax.set(xlabel="recall", ylabel="precision", title="precision–recall vs temperature")
        ax.legend(fontsize=7)
        _save(fig, fig_dir / "pr-vs-temperature.png")
        figures.append(
            Figure(
                "Precision and recall as the temperature τ changes",
                "figures/pr-vs-temperature.png",
            )
        )
    return figures


def plot_guidance(table: pd.DataFrame, fd_col: str, fig_dir: Path) -> list[Figure]:
    """FD and the classifier's accuracy on the classes asked for, against the guidance scale w,
    for every guidance sweep (runs of a conditional prior that differ only in w).

    Error bars: the FD's sampling interval when the evaluation gives one, and the binomial
    95 % interval of the accuracy over the run's samples (1.96 √(a (1 − a) / n)).
    """
    runs = table.dropna(subset=["prior"]) if "prior" in table else table.iloc[:0]
    fixed = ["prior", "sampler", "steps", "temperature"]
    groups = _groups_varying(runs, "guidance", fixed=fixed)
    if not groups or not {fd_col, "class_accuracy"} <= set(runs.columns):
        return []
    fig, (ax_fd, ax_acc) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for (prior, sampler, steps, temp), g in groups:
        g = g.sort_values("guidance")
        label = f"{prior} ({sampler}, {int(steps)} steps, τ={temp:g})"
        fd_err = g.get(f"{fd_col}_ci95")
        ax_fd.errorbar(g["guidance"], g[fd_col], yerr=fd_err, marker="o", capsize=3, label=label)
        acc = g["class_accuracy"]
        acc_err = 1.96 * (acc * (1 - acc) / g["n_samples"]) ** 0.5
        ax_acc.errorbar(g["guidance"], acc, yerr=acc_err, marker="o", capsize=3, label=label)
    ax_fd.set(xlabel="guidance scale w", ylabel=fd_col, title=f"{fd_col} vs guidance")
    ax_acc.set(
        xlabel="guidance scale w", ylabel="classifier accuracy", title="class accuracy vs guidance"
    )
    ax_acc.legend(fontsize=7)
    _save(fig, fig_dir / "guidance.png")
    caption = (
        f"{fd_col} (left) and the classifier's accuracy on the classes asked for (right) "
        "against the classifier-free guidance scale w (95 % intervals)"
    )
    return [Figure(caption, "figures/guidance.png")]


def pareto_front(cost: pd.Series, fd: pd.Series) -> pd.Index:
    """The runs no other run beats on both cost and FD (lower is better for both), by cost."""
    order = pd.DataFrame({"cost": cost, "fd": fd}).sort_values(["cost", "fd"])
    front, best = [], float("inf")
    for index, row in order.iterrows():
        if row["fd"] < best:
            front.append(index)
            best = row["fd"]
    return pd.Index(front)


def plot_quality_vs_time(table: pd.DataFrame, fd_col: str, fig_dir: Path) -> list[Figure]:
    """Quality against cost, every run a point with its FD interval: against measured
    sampling seconds per image (left) and network calls per image (right). Runs of one
    prior and sampler that differ in steps are joined (the steps sweep, labelled by
    steps); the dashed line is the frontier, the runs no other run beats on both axes.
    """
    if not {"seconds_per_image", fd_col, "prior"} <= set(table.columns):
        return []
    runs = table.dropna(subset=["prior", "seconds_per_image", fd_col])
    if runs.empty:
        return []
    costs = [("seconds_per_image", "sampling time (s per image, log)")]
    if "network_calls_per_sample" in runs and runs["network_calls_per_sample"].notna().any():
        costs.append(("network_calls_per_sample", "network calls per image (log)"))
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 3.8), squeeze=False)
    err = runs.get(f"{fd_col}_ci95")
    for ax, (cost, axis_label) in zip(axes[0], costs, strict=True):
        shown = runs.dropna(subset=[cost])
        for (prior, sampler, temp), g in shown.groupby(["prior", "sampler", "temperature"]):
            g = g.sort_values(cost)
            yerr = None if err is None else err.loc[g.index].fillna(0)
            line = "-" if g["steps"].nunique() > 1 else "none"
            label = f"{prior} ({sampler}, τ={temp:g})"
            ax.errorbar(g[cost], g[fd_col], yerr=yerr, marker="o", ls=line, capsize=3, label=label)
            if line != "none":
                for _, row in g.iterrows():
                    ax.annotate(
                        f"{int(row['steps'])}",
                        (row[cost], row[fd_col]),
                        xytext=(4, 4),
                        textcoords="offset points",
                        fontsize=7,
                    )
        front = pareto_front(shown[cost], shown[fd_col])
        ax.plot(shown.loc[front, cost], shown.loc[front, fd_col], "k--", lw=0.8, zorder=0)
        ax.set(xscale="log", xlabel=axis_label, ylabel=fd_col)
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: 2×10⁻³ labels collide
    axes[0][0].set_title(f"{fd_col} vs cost (lower-left is better)")
    axes[0][-1].legend(fontsize=7)
    _save(fig, fig_dir / "quality-vs-time.png")
    caption = (
        f"{fd_col} (95 % intervals) against sampling seconds per image and network calls "
        "per image, one point per run; numbers are sampling steps, the dashed line the "
        "frontier. Seconds were measured on the CPU the report's header names."
    )
    return [Figure(caption, "figures/quality-vs-time.png")]


def _value_columns(log: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(training columns, validation columns) of a training log: ``val_*`` are validation."""
    # A column with no value at all (e.g. an ELBO the plain autoencoder does not have) gets
    # no empty panel.
    cols = [
        c
        for c in log.columns
        if c != "step" and pd.api.types.is_numeric_dtype(log[c]) and log[c].notna().any()
    ]
    val = [c for c in cols if c.startswith("val")]
    train = [c for c in ("loss",) if c in cols] or [c for c in cols if c not in val][:1]
    return train, val


def plot_curve(csv_path: str | Path, out_png: Path, title: str) -> bool:
    """Training loss, then one panel per validation column (their scales differ) of a log."""
    log = pd.read_csv(csv_path)
    train, val = _value_columns(log)
    if "step" not in log or not (train or val):
        return False
    fig, axes = plt.subplots(1, 1 + len(val), figsize=(3.6 * (1 + len(val)), 3.0), squeeze=False)
    axes = axes[0]
    for col in train:
        axes[0].plot(log["step"], log[col], lw=0.8)
    positive = all((log[c].dropna() > 0).all() for c in train)
    axes[0].set(
        title=f"{title}: training {', '.join(train)}",
        xlabel="step",
        yscale="log" if positive else "linear",
    )
    for ax, col in zip(axes[1:], val, strict=True):
        v = log.dropna(subset=[col])
        ax.plot(v["step"], v[col], marker="o")
        ax.set(title=f"{title}: {col}", xlabel="step")
    _save(fig, out_png)
    return True


def plot_codebook_usage(logs: dict[str, Path], fig_dir: Path) -> list[Figure]:
    """Codes in use during training, one line per autoencoder whose log records them."""
    series = {}
    for ae, csv in logs.items():
        log = pd.read_csv(csv)
        col = next((c for c in ("codebook_used", "used_codes") if c in log), None)
        if col and log[col].notna().any():
            series[ae] = log.dropna(subset=[col])[["step", col]].set_axis(["step", "used"], axis=1)
    if not series:
        return []
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for ae, s in series.items():
        ax.plot(s["step"], s["used"], marker="o", label=ae)
    ax.set(xlabel="step", ylabel="codes used (validation)", title="codebook usage")
    ax.legend(fontsize=7)
    _save(fig, fig_dir / "codebook-usage.png")
    return [
        Figure(
            "Codebook usage: distinct codes the validation images use", "figures/codebook-usage.png"
        )
    ]


def plot_latent_scale(logs: dict[str, Path], fig_dir: Path) -> list[Figure]:
    """Flow NLL and latent spread during training, one line per prior whose log records both
    (GLF with and without the stop-gradient: the regularized variant shrinks its latents)."""
    series = {}
    for prior, csv in logs.items():
        log = pd.read_csv(csv)
        if {"nll", "latent_std"} <= set(log.columns) and log["latent_std"].notna().any():
            series[prior] = log
    if not series:
        return []
    fig, (ax_nll, ax_std) = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for prior, log in series.items():
        ax_nll.plot(log["step"], log["nll"], lw=0.8, label=prior)
        ax_std.plot(log["step"], log["latent_std"], lw=0.8, label=prior)
    ax_nll.set(xlabel="step", ylabel="flow NLL of the batch latents (nats)", title="flow NLL")
    ax_std.set(xlabel="step", ylabel="latent std (batch, mean over dims)", title="latent spread")
    ax_std.set_yscale("log")
    ax_nll.legend(fontsize=7)
    _save(fig, fig_dir / "latent-scale.png")
    return [
        Figure(
            "Flow NLL and latent spread during joint training (per step, training batches)",
            "figures/latent-scale.png",
        )
    ]
