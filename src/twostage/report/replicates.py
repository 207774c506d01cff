"""Intervals on every run's scores: over its replicates (seeds.py) when it has several,
else over its own generated samples (the evaluation's bootstrap block).

Over replicates, each score ``m`` becomes the mean over seeds, with ``m_std`` (sample
standard deviation) and ``m_ci95``, the half-width of the 95 % Student-t interval of
the mean: t(0.975, n - 1) · std / sqrt(n). A run with one replicate keeps its own
score, and ``m_ci95`` is the bootstrap half-width the evaluation measured (FD,
precision, density, coverage; evaluate/bootstrap.py). ``ci95_source`` says which.

Which differences between runs are within the intervals: for each pair of runs, do
their FD intervals overlap, and (both with replicates) Welch's t-test on their seeds.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from twostage import paths
from twostage.artifacts import read_json
from twostage.config import Params
from twostage.report.collect import numeric
from twostage.report.page import Section, Table, Text

LEVEL = 0.95
T_SOURCE = "t over seeds"
BOOTSTRAP_SOURCE = "bootstrap over samples"


def t_half_width(values: list[float] | np.ndarray, level: float = LEVEL) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (NaN below 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return math.nan
    return float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def replicate_rows(p: Params) -> pd.DataFrame:
    """One row per replicate of every target run: its seed and every evaluation score."""
    rows = []
    for run in p["targets"]:
        for replicate, seed in p.replicates_of(run):
            scores = numeric(read_json(paths.evaluation(replicate)["metrics"]))
            rows.append({"run": run, "replicate": replicate, "seed": seed, **scores})
    return pd.DataFrame(rows)


def summary(p: Params, replicates: pd.DataFrame) -> pd.DataFrame:
    """Per target run: n_replicates, seeds, and each score's mean, _std and _ci95."""
    rows = []
    for run, group in replicates.groupby("run", sort=False):
        metrics = [c for c in group.columns if c not in ("run", "replicate", "seed")]
        row: dict[str, Any] = {"run": run, "n_replicates": len(group)}
        row["seeds"] = " ".join(str(s) for s in group["seed"])
        if len(group) > 1:
            row["ci95_source"] = T_SOURCE
            for m in metrics:
                values = group[m].dropna()
                row[m] = values.mean()
                row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
                row[f"{m}_ci95"] = t_half_width(values)
        else:
            boot = read_json(paths.evaluation(group["replicate"].iloc[0])["metrics"])
            boot = boot.get("bootstrap", {})
            row["ci95_source"] = BOOTSTRAP_SOURCE if boot else ""
            for m in metrics:
                row[m] = group[m].iloc[0]
                row[f"{m}_std"] = math.nan
                row[f"{m}_ci95"] = boot.get(f"{m}_ci95", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def with_intervals(runs: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """The runs table with each score replaced by its mean and followed by its _std and
    _ci95 columns; n_replicates, seeds and ci95_source after the run's name."""
    if intervals.empty:
        return runs
    by_run = intervals.set_index("run")
    out = runs.copy()
    hit = out["run"].isin(by_run.index)
    columns = list(out.columns)
    for col in [c for c in by_run.columns if c in columns]:
        out.loc[hit, col] = out.loc[hit, "run"].map(by_run[col])
        extra = [f"{col}_std", f"{col}_ci95"]
        for e in extra:
            out[e] = out["run"].map(by_run[e])
        columns = [c for c in columns if c not in extra]
        at = columns.index(col) + 1
        columns[at:at] = extra
    for e in ("ci95_source", "seeds", "n_replicates"):
        out[e] = out["run"].map(by_run[e])
        columns.insert(columns.index("run") + 1, e)
    out["n_replicates"] = out["n_replicates"].astype("Int64")  # empty on calibration rows
    return out[columns]


def differences(intervals: pd.DataFrame, replicates: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every pair of runs: do their ``metric`` intervals overlap; Welch's p over seeds."""
    rows = []
    if metric not in intervals:
        return pd.DataFrame(rows)
    known = intervals.dropna(subset=[metric])
    for (_, a), (_, b) in itertools.combinations(known.iterrows(), 2):
        ci_a, ci_b = a[f"{metric}_ci95"], b[f"{metric}_ci95"]
        gap = abs(a[metric] - b[metric])
        row = {
            "run_a": a["run"],
            "run_b": b["run"],
            metric + "_a": a[metric],
            metric + "_b": b[metric],
            "difference": gap,
            "ci95_a": ci_a,
            "ci95_b": ci_b,
            "within_intervals": bool(gap <= ci_a + ci_b) if np.isfinite(ci_a + ci_b) else None,
            "welch_p": math.nan,
        }
        if a["n_replicates"] > 1 and b["n_replicates"] > 1:
            xa = replicates.loc[replicates["run"] == a["run"], metric].dropna()
            xb = replicates.loc[replicates["run"] == b["run"], metric].dropna()
            if np.ptp(xa) > 0 or np.ptp(xb) > 0:  # no test between two constant samples
                row["welch_p"] = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
        rows.append(row)
    return pd.DataFrame(rows)


def _text(diffs: pd.DataFrame, metric: str) -> str:
    if diffs.empty:
        return f"No two runs have a {metric} to compare."
    within = diffs[diffs["within_intervals"].fillna(False).astype(bool)]
    pairs = ", ".join(f"{a} ~ {b}" for a, b in zip(within["run_a"], within["run_b"], strict=True))
    return (
        f"{metric} ± its 95 % interval ({T_SOURCE} for runs with replicates, "
        f"{BOOTSTRAP_SOURCE} otherwise; columns _std and _ci95 of the runs table). "
        f"{len(within)} of {len(diffs)} pairs of runs differ by no more than the sum of their "
        "half-widths, so the table does not separate them"
        + (f": {pairs}." if pairs else ".")
        + " welch_p is Welch's t-test over the seeds of two runs that both have replicates."
    )


def add_to_report(
    p: Params, runs: pd.DataFrame, tab_dir: Path, fd_col: str, write_csv
) -> tuple[pd.DataFrame, Section]:
    """The runs table with intervals, the replicate and pair tables written, and their section."""
    reps = replicate_rows(p)
    intervals = summary(p, reps)
    diffs = differences(intervals, reps, fd_col)
    write_csv(reps, tab_dir / "replicates.csv")
    write_csv(diffs, tab_dir / "run_differences.csv")
    section = Section(
        "Intervals and replicates",
        [
            Text(_text(diffs, fd_col)),
            Table(diffs, csv="tables/run_differences.csv"),
            Text("Every replicate's scores:"),
            Table(reps, csv="tables/replicates.csv"),
        ],
    )
    return with_intervals(runs, intervals), section
