"""The still-improving test on hand-made validation curves with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from twostage.kinds import HIGHER, LOWER
from twostage.report.convergence import (
    curve_status,
    model_curves,
    still_improving,
    tail_length,
)

FALLING = [10.0, 6.0, 4.0, 3.0, 2.5, 2.2, 1.6, 1.0]


def test_tail_is_the_last_quarter_and_at_least_one_evaluation():
    assert [tail_length(n) for n in (1, 2, 4, 5, 8, 9)] == [1, 1, 1, 2, 2, 3]


def test_falling_tail_is_still_improving():
    assert still_improving(FALLING)


def test_flat_tail_is_not():
    # The last value ties the best earlier one: not the (strict) best.
    assert not still_improving([10.0, 6.0, 4.0, 3.0, 2.5, 2.0, 2.0, 2.0])
    # Strictly best, but by 0.0001 over a range of 8: below the 1 % tolerance.
    assert not still_improving([10.0, 6.0, 4.0, 3.0, 2.5, 2.0, 2.0, 1.9999])


def test_best_earlier_is_not():
    # Overfitting: the validation bound rose after its best evaluation.
    assert not still_improving([4.6, 3.8, 3.4, 3.3, 3.5, 3.9, 4.4, 4.8])
    # Improving again in the window, but not back to its best.
    assert not still_improving([10.0, 6.0, 4.0, 2.0, 3.0, 3.5, 3.0, 2.5])


def test_window_sees_an_improvement_spread_over_the_last_quarter():
    # The end of a cosine decay: the last two evaluations differ by 0.001 (0.0125 % of the
    # range), but the window (last 2 of 8) improved by 0.201 on the 2.2 before it.
    curve = [10.0, 6.0, 4.0, 3.0, 2.5, 2.2, 2.0, 1.999]
    assert still_improving(curve)
    assert not still_improving(curve, tail_fraction=0.01)  # window = the last evaluation only


def test_tolerance_is_relative_to_the_range_and_strict():
    # Range 1.0, improvement over the window (1 of 3) exactly 0.25.
    curve = [1.0, 0.25, 0.0]
    assert still_improving(curve, tolerance=0.2)
    assert not still_improving(curve, tolerance=0.25)


@pytest.mark.parametrize("shift", [-1000.0, 0.0, 1e6])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 50.0])
def test_negative_and_offset_curves_give_the_same_answer(shift, scale):
    # Flow NLLs cross zero: only the changes count, not the values.
    for curve, expected in [(FALLING, True), ([3.0, 1.0, 1.5, 2.0], False)]:
        moved = [shift + scale * (v - 5.0) for v in curve]
        assert still_improving(moved) is expected, (moved, expected)


def test_one_evaluation_or_none_is_not_evidence():
    assert not still_improving([])
    assert not still_improving([3.0])
    assert not still_improving([float("nan"), 3.0, float("nan")])
    assert still_improving([float("nan"), 3.0, float("nan"), 2.0])  # NaN rows: no evaluation


def test_curve_status_reads_a_log_and_respects_direction():
    # A VAE's validation ELBO in nats: negative, higher is better, rising at the end.
    log = pd.DataFrame(
        {
            "step": [1, 200, 201, 400, 600],
            "loss": [9.0, 5.0, 5.0, 4.0, 3.0],
            "val_elbo_nats": [math.nan, -157.0, math.nan, -129.0, -120.0],
        }
    )
    rising = curve_status(log, "val_elbo_nats", HIGHER)
    assert rising["still_improving"] and rising["n_evals"] == 3 and rising["last_step"] == 600
    assert rising["best_before_window"] == -129.0 and rising["window_improvement"] == 9.0
    assert rising["range"] == 37.0
    # The same numbers read as a loss (lower is better): the best was the first.
    falling = curve_status(log, "val_elbo_nats", LOWER)
    assert not falling["still_improving"] and falling["window_improvement"] == -37.0
    missing = curve_status(log, "val_bits", LOWER)
    assert missing["n_evals"] == 0 and missing["still_improving"] is False


def test_model_curves_reads_every_validation_column_of_a_kind(tmp_path):
    csv = tmp_path / "train_log.csv"
    csv.write_text("step,loss,val_bits,val_mse\n5,1.0,1.0,0.3\n10,0.9,1.2,0.2\n")
    status = {s["column"]: s["still_improving"] for s in model_curves(csv, "glf", "val_bound")}
    assert status == {"val_mse": True, "val_bits": False}  # the autoencoder half still improves
    assert model_curves(csv, "a-kind-nobody-knows", "val_bound") == []


def test_a_prior_selected_by_sample_fd_is_judged_by_that_curve(tmp_path):
    """Its bound still creeps down, but the best sample FD came before the end: the kept
    checkpoint would not change with more steps of the same run, so no marker."""
    csv = tmp_path / "train_log.csv"
    rows = [(250, 4.6, 150.0), (500, 4.0, 60.0), (750, 3.6, 40.0), (1000, 3.4, 55.0)]
    csv.write_text("step,loss,val_bits,val_sample_fd\n")
    with csv.open("a") as f:
        f.writelines(f"{s},1.0,{b},{fd}\n" for s, b, fd in rows)
    by_fd = {s["column"]: s for s in model_curves(csv, "absorbing", "sample_fd")}
    assert by_fd["val_bits"]["still_improving"] and not by_fd["val_bits"]["decides_checkpoint"]
    assert not by_fd["val_sample_fd"]["still_improving"]
    assert by_fd["val_sample_fd"]["decides_checkpoint"]
    # Selected by the bound, the same run is judged by the bound.
    by_bound = {s["column"]: s for s in model_curves(csv, "absorbing", "val_bound")}
    assert by_bound["val_bits"]["decides_checkpoint"]
    assert not by_bound["val_sample_fd"]["decides_checkpoint"]


def test_every_model_kind_has_its_validation_curves():
    from twostage.kinds import KINDS

    assert {"vq", "absorbing", "glf", "vae"} <= set(KINDS)
    assert all(kind.curves for kind in KINDS.values())
