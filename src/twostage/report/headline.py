"""The report's headline: per autoencoder, its runs and its scale ranked by Fréchet distance.

One compact table per autoencoder, read from the runs table (:func:`collect.runs_table`):
every sampling run of a prior on that autoencoder plus its three reference rows (floor,
stage-1 ceiling, bad model), each reference once even when the runs table repeats it,
sorted by FD, the lowest-FD trained run marked. Cells are short display strings: FD with
one decimal, PRDC with two, a ``± half-width`` when the runs table has a ``<metric>_ci95``
column beside ``<metric>``, so the table fits a laptop screen; the ``±`` column says per row
which kind of interval that is (over N seeds, or a single run's samples). Every column of
every run stays in the full table further down the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from twostage.kinds import CONTINUOUS_PRIORS, JOINT_PRIORS
from twostage.report import convergence
from twostage.report.collect import CALIBRATION_ROWS, CEILING_ROW, CONTINUOUS_CALIBRATION_ROWS
from twostage.report.replicates import REPLICATES, SINGLE_RUN

BEST = "★"
# Suffix of the column holding the 95% interval half-width of a metric.
INTERVAL_SUFFIX = "_ci95"
# Header of the column that says which kind each row's ± is.
KIND = "±"

# Row label in the runs table → short label in the headline, best to worst.
REFERENCE_LABELS = {
    CALIBRATION_ROWS["real_val_vs_train"]: "floor: real images",
    CEILING_ROW: "ceiling: stage 1",
    CALIBRATION_ROWS["random_tokens"]: "bad: random tokens",
    CONTINUOUS_CALIBRATION_ROWS["random_tokens"]: "bad: N(0, I) latents",
}
# Every prior writes its validation bits under this key: per token for a token prior, per
# latent dimension for a continuous one (a density: it can be negative).
BITS = "prior.val_bits_per_token"


def _fixed(decimals: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{decimals}f}"


def _rate(v: float) -> str:
    """Images per second: whole numbers, two significant digits below ten."""
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"


def with_interval(row: pd.Series, col: str, fmt: Callable[[float], str]) -> str:
    """``row[col]`` formatted, followed by ``± row[col + "_ci95"]`` when that half-width is
    there (its kind: :func:`interval_label`); "" when the row has no value."""
    value = row.get(col)
    if value is None or pd.isna(value):
        return ""
    text = fmt(value)
    half = row.get(f"{col}{INTERVAL_SUFFIX}")
    if half is not None and pd.notna(half):
        text += f" ± {fmt(half)}"
    return text


def interval_label(row: pd.Series) -> str:
    """Which kind a row's ± is, in a word or two: "3 seeds" (Student-t over replicates),
    "samples" (a single run's sampling interval), "" (no interval)."""
    kind = row.get("interval_kind")
    if kind == REPLICATES:
        return f"{int(row['n_replicates'])} seeds"
    if kind == SINGLE_RUN:
        return "samples"
    return ""


def fd_text(row: pd.Series, fd_col: str) -> str:
    """A run's Fréchet distance as the headline shows it (one decimal), with its interval
    and the interval's kind if it has one: "30.0 ± 1.5 (samples)"."""
    text = with_interval(row, fd_col, _fixed(1))
    label = interval_label(row)
    return f"{text} ({label})" if "±" in text and label else text


@dataclass(frozen=True)
class Column:
    label: str  # header: short, so that the table fits 1 280 px
    source: str  # column of the runs table
    fmt: Callable[[float], str]
    meaning: str  # for the legend under the table


def metric_columns(fd_col: str) -> list[Column]:
    """The numeric columns of the headline, after run, prior and sampler."""
    return [
        Column("steps", "steps", _fixed(0), "sampling steps"),
        Column("τ", "temperature", lambda v: f"{v:g}", "sampling temperature"),
        Column("FD", fd_col, _fixed(1), f"Fréchet distance ({fd_col}), lower is better"),
        Column("prec", "precision", _fixed(2), "precision"),
        Column("rec", "recall", _fixed(2), "recall"),
        Column("dens", "density", _fixed(2), "density"),
        Column("cov", "coverage", _fixed(2), "coverage"),
        Column("img/s", "samples_per_s", _rate, "sampling speed, images per second"),
    ]


def _bits(row: pd.Series) -> str:
    """The prior's validation bits with their unit; "" for a reference row."""
    text = with_interval(row, BITS, _fixed(2))
    if not text:
        return ""
    return text + ("/dim" if row.get("prior_kind") in CONTINUOUS_PRIORS else "/tok")


@dataclass
class Headline:
    """One autoencoder's headline table: display strings and which rows to highlight."""

    autoencoder: str
    frame: pd.DataFrame  # one row per run or reference, sorted by FD; strings only
    best: int | None  # row position of the lowest-FD trained run
    references: list[int]  # row positions of floor, ceiling and bad model
    joint: bool  # a run of a jointly trained prior is listed (it decodes with its own AE)


def headline_rows(runs: pd.DataFrame, ae: str, fd_col: str) -> pd.DataFrame:
    """The runs of ``ae`` and its reference rows (each once), sorted by ``fd_col``.

    Adds ``reference`` (the short label of a reference row, else "") and ``best``
    (True on the lowest-FD trained run: floor and ceiling never count).
    """
    rows = runs[runs["autoencoder"] == ae]
    is_ref = rows["run"].isin(REFERENCE_LABELS)
    trained = rows[~is_ref & rows["prior"].notna()]
    refs = rows[is_ref].drop_duplicates(subset=["run"])
    out = pd.concat([trained, refs], ignore_index=True)
    out["reference"] = out["run"].map(REFERENCE_LABELS).fillna("")
    out["best"] = False
    if fd_col not in out:
        return out
    fd = pd.to_numeric(out[fd_col], errors="coerce")
    out = out.iloc[fd.sort_values(kind="stable", na_position="last").index].reset_index(drop=True)
    fd = pd.to_numeric(out[fd_col], errors="coerce")
    candidates = fd[(out["reference"] == "") & fd.map(math.isfinite)]
    if not candidates.empty:
        out.loc[candidates.idxmin(), "best"] = True
    return out


def _run_label(row: pd.Series) -> str:
    label = row["reference"] or str(row["run"])
    if row["best"]:
        label = f"{BEST} {label}"
    if isinstance(row.get("convergence"), str) and row["convergence"]:
        label += f" {convergence.SYMBOL}"
    return label


def format_headline(rows: pd.DataFrame, fd_col: str) -> pd.DataFrame:
    """Display strings of :func:`headline_rows`: the columns a reader compares runs by."""

    def text(row: pd.Series, col: str) -> str:
        value = row.get(col)
        return "" if value is None or pd.isna(value) else str(value)

    out = {
        "run": [_run_label(r) for _, r in rows.iterrows()],
        "prior": [text(r, "prior") for _, r in rows.iterrows()],
        "sampler": [text(r, "sampler") for _, r in rows.iterrows()],
        KIND: [interval_label(r) for _, r in rows.iterrows()],
    }
    for col in metric_columns(fd_col):
        if col.source in rows:
            out[col.label] = [with_interval(r, col.source, col.fmt) for _, r in rows.iterrows()]
        else:
            out[col.label] = [""] * len(rows)
    out["bits"] = [_bits(r) for _, r in rows.iterrows()]
    # img/s last: the speed is a cost, the columns before it are quality.
    order = [*(c for c in out if c != "img/s"), "img/s"]
    return pd.DataFrame({c: out[c] for c in order})


def headline_tables(runs: pd.DataFrame, autoencoders: list[str], fd_col: str) -> list[Headline]:
    """One :class:`Headline` per autoencoder, in the order given."""
    tables = []
    for ae in autoencoders:
        rows = headline_rows(runs, ae, fd_col)
        kinds = rows["prior_kind"] if "prior_kind" in rows else pd.Series(dtype=object)
        tables.append(
            Headline(
                autoencoder=ae,
                frame=format_headline(rows, fd_col),
                best=next(iter(rows.index[rows["best"]]), None),
                references=list(rows.index[rows["reference"] != ""]),
                joint=bool(kinds.isin(JOINT_PRIORS).any()),
            )
        )
    return tables


def legend(fd_col: str, joint: bool) -> str:
    """What the headline's labels and marks mean."""
    cols = "; ".join(f"{c.label}: {c.meaning}" for c in metric_columns(fd_col)[2:])
    text = (
        f"{BEST} marks the lowest FD among trained runs. floor: real validation images; "
        "ceiling: the autoencoder's reconstructions of them (what stage 1 costs before any "
        "prior); bad: decoded random tokens or N(0, I) latents (a prior that learned nothing). "
        f"{cols}; bits: the prior's validation bits per token (/tok), or per latent dimension "
        "for a continuous prior (/dim: a density, it can be negative). ± is a 95 % interval "
        f"half-width of the kind the {KIND} column names: N seeds, the Student-t interval of "
        "the mean over the run's N replicates; samples, a single run's sampling interval, "
        "how far the draw of its generated samples alone moves the score, without what "
        "another seed's training would change; the report compares intervals of one kind "
        f"only. {convergence.SYMBOL}: the prior or "
        "autoencoder was still improving when its training stopped (see Convergence)."
    )
    if joint:
        text += (
            " A jointly trained prior (GLF, VAE with flow) decodes with its own autoencoder; "
            "it is listed with the autoencoder its params name."
        )
    return text
