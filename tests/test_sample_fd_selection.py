"""The sample-quality validation signal of token priors: logged, and able to pick the checkpoint.

The scorer (train/sample_quality.SampleFD) is replaced by one that returns hand-chosen
values and remembers the weights it was shown, so what the trainer logs and keeps can be
checked exactly.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from twostage import cli
from twostage.config import ConfigError, load_params
from twostage.train import common
from twostage.train import token_prior as prior_trainer

PROFILE = "params/profiles/sample-fd-test.yaml"
TINY = (
    "priors:\n"
    "  absorbing_mnist: {n_layer: 1, n_embd: 16, n_head: 2, steps: 8, eval_every: 2,"
    " warmup_steps: 2, batch_size: 16, val_elbo_samples: 1, sample_fd_images: 8,"
    " %sselect_by: %s}\n"
)
# One value per evaluation (steps 2, 4, 6, 8): the best is the second.
HAND_FD = [9.0, 4.0, 6.0, 5.0]


class FakeSampleFD:
    """Returns HAND_FD in turn; keeps a copy of the weights it scored each time."""

    def __init__(self, p, name, device, seed):
        self.calls: list[dict] = []
        FakeSampleFD.last = self

    def __call__(self, model) -> float:
        self.calls.append({k: v.clone() for k, v in model.state_dict().items()})
        return HAND_FD[len(self.calls) - 1]


def _train(project, monkeypatch, select_by: str, extra: str = ""):
    """Train the tiny prior; ``extra`` adds settings (``"key: value, "``) to its entry."""
    monkeypatch.setattr(prior_trainer, "SampleFD", FakeSampleFD)
    (project / PROFILE).write_text(TINY % (extra, select_by))
    assert cli.main(["--profile", PROFILE, "train-prior", "absorbing_mnist"]) == 0
    out = project / "results/priors/absorbing_mnist"
    with open(out / "train_log.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["val_bits"]]
    metrics = json.loads((out / "metrics.json").read_text())
    return rows, metrics, torch.load(out / "model.pt", weights_only=False)


def test_sample_fd_is_logged_and_selects_the_best_logged_checkpoint(
    token_grid_project, monkeypatch
):
    rows, metrics, ckpt = _train(token_grid_project, monkeypatch, "sample_fd")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert [float(r["val_sample_fd"]) for r in rows] == HAND_FD
    assert metrics["selected_by"] == "sample_fd"
    assert metrics["best_step"] == 4 and ckpt["step"] == 4
    assert metrics["val_sample_fd"] == 4.0
    # The bound reported is the one logged at the kept step, not the best bound.
    assert metrics["val_bits_per_token"] == pytest.approx(float(rows[1]["val_bits"]))
    kept = FakeSampleFD.last.calls[1]
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(value, kept[key]), key
    # The weights did change between evaluations, so keeping step 4 is a real choice.
    assert not torch.equal(
        kept["denoiser.head.weight"], FakeSampleFD.last.calls[3]["denoiser.head.weight"]
    )


def test_val_bound_selection_ignores_the_sample_fd(token_grid_project, monkeypatch):
    rows, metrics, ckpt = _train(token_grid_project, monkeypatch, "val_bound")
    bounds = [float(r["val_bits"]) for r in rows]
    best = min(range(len(bounds)), key=bounds.__getitem__)
    assert metrics["selected_by"] == "val_bound"
    assert metrics["best_step"] == int(rows[best]["step"]) == ckpt["step"]
    assert metrics["val_bits_per_token"] == pytest.approx(bounds[best])
    assert metrics["val_sample_fd"] == HAND_FD[best]
    assert all(math.isfinite(float(r["val_sample_fd"])) for r in rows)


def test_select_by_sample_fd_needs_the_sample(token_grid_project):
    (token_grid_project / PROFILE).write_text(
        "priors:\n  absorbing_mnist: {select_by: sample_fd, sample_fd_images: 0}\n"
    )
    with pytest.raises(ConfigError, match="select_by: sample_fd needs .*sample_fd_images > 0"):
        load_params([PROFILE])


def test_sample_fd_steps_cannot_exceed_the_tokens(token_grid_project):
    (token_grid_project / PROFILE).write_text(
        "priors:\n  absorbing_mnist: {sample_fd_images: 8, sample_fd_steps: 17}\n"
    )
    with pytest.raises(ConfigError, match="sample_fd_steps: 17 reverse steps exceed the 16"):
        load_params([PROFILE])


def test_ema_is_the_moving_average_of_the_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)
    ema = common.EMA(model, decay=0.75)
    for w in (4.0, 8.0):
        model.weight.data.fill_(w)
        ema.update(model)
    # 0.75 * 0 + 0.25 * 4 = 1, then 0.75 * 1 + 0.25 * 8 = 2.75
    assert ema.model.weight.item() == 2.75
    assert not ema.model.weight.requires_grad


def test_with_ema_the_averaged_weights_are_scored_and_kept(token_grid_project, monkeypatch):
    """The default absorbing prior averages its weights: the sample FD must score the
    average, and the checkpoint kept must be that average, not the raw weights."""
    raw_after_step: list[dict] = []

    class RecordingEMA(common.EMA):
        def update(self, model):
            super().update(model)
            raw_after_step.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(common, "EMA", RecordingEMA)  # what moving_average makes
    _, _, ckpt = _train(token_grid_project, monkeypatch, "sample_fd", extra="ema_decay: 0.5, ")
    kept = FakeSampleFD.last.calls[1]  # HAND_FD's best: the evaluation at step 4
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(value, kept[key]), key
    # What was scored and kept is not the raw model of that step (raw_after_step[3] is the
    # raw weights after the 4th step's update).
    assert not torch.equal(kept["denoiser.head.weight"], raw_after_step[3]["denoiser.head.weight"])
