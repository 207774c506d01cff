"""Intervals on every run's scores, of two kinds: over its replicates (seeds.py) when it
has several, else a single run's sampling interval (the evaluation's
``sampling_intervals`` block).

Over replicates, each score ``m`` becomes the mean over seeds, with ``m_std`` (sample
standard deviation) and ``m_ci95``, the half-width of the 95 % Student-t interval of
the mean: t(0.975, n - 1) · std / sqrt(n). A run with one replicate keeps its own
score, and ``m_ci95`` is the half-width the evaluation measured over its generated
samples (FD, precision, density, coverage; evaluate/sampling_intervals.py): what the
draw of the samples alone moves the score by, without what another seed's training
would. ``interval_kind`` says which kind a row has, ``interval`` the same in words.

Which differences between runs are within the intervals: for each pair of runs whose
intervals are of one kind, do their FD intervals overlap, and (both with replicates)
Welch's t-test on their seeds. A pair of a replicated run and a single run is not
compared: the two half-widths measure different things, and their sum means neither.
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
# interval_kind of a row: a Student-t interval over replicates, or one run's sampling interval
REPLICATES = "replicates"
SINGLE_RUN = "single run"
BLOCK = "sampling_intervals"  # the evaluation's key holding a single run's half-widths


def describe(kind: str, n_replicates: int | str) -> str:
    """What a row's ± is, in words (the ``interval`` column); "" for no interval."""
    if kind == REPLICATES:
        return f"over {n_replicates} replicates (Student-t 95 %)"
    if kind == SINGLE_RUN:
        return "single run, sampling interval (95 %)"
    return ""


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
            row["interval_kind"] = REPLICATES
            for m in metrics:
                values = group[m].dropna()
                row[m] = values.mean()
                row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
                row[f"{m}_ci95"] = t_half_width(values)
        else:
            own = read_json(paths.evaluation(group["replicate"].iloc[0])["metrics"])
            own = own.get(BLOCK, {})
            row["interval_kind"] = SINGLE_RUN if own else ""
            for m in metrics:
                row[m] = group[m].iloc[0]
                row[f"{m}_std"] = math.nan
                row[f"{m}_ci95"] = own.get(f"{m}_ci95", math.nan)
        row["interval"] = describe(row["interval_kind"], len(group))
        rows.append(row)
    return pd.DataFrame(rows)


def with_intervals(runs: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """The runs table with each score replaced by its mean and followed by its _std and
    _ci95 columns; n_replicates, seeds, interval_kind and interval after the run's name."""
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
    for e in ("interval", "interval_kind", "seeds", "n_replicates"):
        out[e] = out["run"].map(by_run[e])
        columns.insert(columns.index("run") + 1, e)
    out["n_replicates"] = out["n_replicates"].astype("Int64")  # empty on calibration rows
    return out[columns]


def differences(intervals: pd.DataFrame, replicates: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every pair of runs whose intervals are of one kind (both over replicates, or both
    single runs): do their ``metric`` intervals overlap; Welch's p over seeds."""
    rows = []
    if metric not in intervals:
        return pd.DataFrame(rows)
    known = intervals.dropna(subset=[metric])
    for (_, a), (_, b) in itertools.combinations(known.iterrows(), 2):
        if not a["interval_kind"] or a["interval_kind"] != b["interval_kind"]:
            continue
        ci_a, ci_b = a[f"{metric}_ci95"], b[f"{metric}_ci95"]
        gap = abs(a[metric] - b[metric])
        row = {
            "run_a": a["run"],
            "run_b": b["run"],
            "interval_kind": a["interval_kind"],
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


def _text(diffs: pd.DataFrame, intervals: pd.DataFrame, metric: str) -> str:
    known = intervals.dropna(subset=[metric]) if metric in intervals else intervals.iloc[:0]
    left_out = len(known) * (len(known) - 1) // 2 - len(diffs)
    kinds = (
        f"{metric} ± its 95 % interval, of one of two kinds (column interval of the runs "
        f"table): '{describe(REPLICATES, 'N')}' for a run with replicates, "
        f"else '{describe(SINGLE_RUN, 1)}': how far the draw of its generated samples alone "
        "moves the score, which leaves out what another seed's training would change. "
        "Only intervals of one kind are compared"
        + (
            f" ({left_out} pairs of runs with intervals of different kinds, or none, are not)."
            if left_out
            else "."
        )
    )
    if diffs.empty:
        return kinds + f" No two runs have a {metric} interval of one kind to compare."
    within = diffs[diffs["within_intervals"].fillna(False).astype(bool)]
    pairs = ", ".join(f"{a} ~ {b}" for a, b in zip(within["run_a"], within["run_b"], strict=True))
    return (
        kinds
        + f" {len(within)} of {len(diffs)} compared pairs differ by no more than the sum of their "
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
            Text(_text(diffs, intervals, fd_col)),
            Table(diffs, csv="tables/run_differences.csv"),
            Text("Every replicate's scores:"),
            Table(reps, csv="tables/replicates.csv"),
        ],
    )
    return with_intervals(runs, intervals), section
