"""Whether a trained model's validation curve was still improving when training stopped.

A model flagged here was stopped before its validation number settled, so a longer
run would likely change it (and every number measured downstream of it).

The test looks at a window, the last quarter of the evaluations, rather than at the
last two: with a cosine learning-rate decay the curve flattens at the end because
the steps shrink, not because the model has converged, and two consecutive
evaluations there barely differ even when the run was far too short. The
improvement over the window is compared with the curve's range (worst minus best
evaluation), not with its value: the value's scale means nothing for losses that
cross zero (flow NLLs, ELBOs in nats), while the range is the change training has
made so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from twostage.kinds import KINDS, LOWER

# An improvement over the last quarter of the evaluations larger than this fraction of
# the curve's range (what training achieved from the first evaluation on) counts as
# still improving; below it, the creep a settled run keeps while its lr decays.
TOLERANCE = 0.01
TAIL_FRACTION = 0.25

SYMBOL = "⚠"  # where a table has no room for the words
MARKER = f"{SYMBOL} still improving at last eval"


def tail_length(n: int, tail_fraction: float = TAIL_FRACTION) -> int:
    """Evaluations in the final window: the last ``tail_fraction`` of ``n``, at least one."""
    return max(1, math.ceil(n * tail_fraction))


def still_improving(
    values: Sequence[float], tolerance: float = TOLERANCE, tail_fraction: float = TAIL_FRACTION
) -> bool:
    """Whether a validation curve (one value per evaluation, lower is better) still improved.

    True when the last evaluation is the best of all, and it beats the best evaluation
    before the final window (the last ``tail_fraction`` of the evaluations) by more than
    ``tolerance`` times the curve's range. A curve with fewer than two evaluations gives
    no evidence either way: False.
    """
    v = [float(x) for x in values if not math.isnan(float(x))]
    if len(v) < 2:
        return False
    before, last = v[: len(v) - tail_length(len(v), tail_fraction)], v[-1]
    span = max(v) - min(v)
    return last < min(v[:-1]) and min(before) - last > tolerance * span


def curve_status(log: pd.DataFrame, column: str, better: str) -> dict:
    """The numbers behind :func:`still_improving` for one column of a training log."""
    rows = log.dropna(subset=[column]) if column in log else log.iloc[:0]
    values = rows[column].astype(float).tolist() if column in log else []
    sign = 1.0 if better == LOWER else -1.0
    n = len(values)
    before = values[: n - tail_length(n)] if n >= 2 else []
    best_before = sign * min(sign * x for x in before) if before else math.nan
    return {
        "column": column,
        "better": better,
        "n_evals": n,
        "last_step": int(rows["step"].iloc[-1]) if n else None,
        "last": values[-1] if n else math.nan,
        "best_before_window": best_before,
        # positive: the last evaluation beats the best one before the final window
        "window_improvement": sign * (best_before - values[-1]) if n else math.nan,
        "range": max(values) - min(values) if n else math.nan,
        "still_improving": still_improving([sign * x for x in values]),
    }


def model_curves(csv_path: str | Path, kind: str, select_by: str | None) -> list[dict]:
    """The status of each validation curve a model of ``kind`` logs (unknown kind: none).

    ``decides_checkpoint`` marks the curves the kept checkpoint is chosen by, the ones a
    marker is about: for a token prior with ``select_by: sample_fd`` that is its sample FD
    (``val_sample_fd``), whose best evaluation is kept whatever the bound does after it;
    the bound is still listed.
    """
    log = pd.read_csv(csv_path)
    curves = list(KINDS[kind].curves) if kind in KINDS else []
    by_sample = select_by == "sample_fd" and "val_sample_fd" in log
    if "val_sample_fd" in log:
        curves.append(("val_sample_fd", LOWER))
    return [
        {
            **curve_status(log, col, better),
            "decides_checkpoint": (col == "val_sample_fd") == by_sample,
        }
        for col, better in curves
    ]
