"""A non-finite loss stops training with the step and the loss terms, keeps the last resumable
state, writes no output and exits non-zero; a configured number of bad steps is skipped first."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from twostage import cli
from twostage.artifacts import load_torch
from twostage.models.priors.autoregressive import AutoregressivePrior
from twostage.train.common import NonFiniteGuard

PROFILE = "params/profiles/numerics-test.yaml"
TINY_PRIOR = (
    "checkpoint_every: 5\n"
    "priors:\n"
    "  autoregressive_mnist: {n_layer: 1, n_embd: 16, n_head: 2, steps: 12, eval_every: 6,"
    " warmup_steps: 2, batch_size: 16,"
    # the trainer options these tests were written for, not the default entry's
    " dropout: 0.0, ema_decay: 0.0, lr_schedule: constant, cpu_bf16: false,"
    " sample_fd_images: 0, select_by: val_bound%s}\n"
)
STATE = Path(".twostage-state/train_prior/autoregressive_mnist.pt")
OUT = Path("results/priors/autoregressive_mnist")


def test_guard_skips_up_to_its_budget_then_stops():
    guard = NonFiniteGuard(budget=2)
    assert guard.finite(1, loss=torch.tensor(0.5), elbo=0.5)
    assert not guard.finite(2, loss=torch.tensor(float("nan")), elbo=1.0)
    assert not guard.finite(5, loss=float("inf"), elbo=1.0)
    resumed = NonFiniteGuard(budget=2)
    resumed.load_state_dict(guard.state_dict())  # the count survives a resume
    with pytest.raises(FloatingPointError, match=r"step 9: loss=nan, elbo=2 .*2 bad step"):
        resumed.finite(9, loss=float("nan"), elbo=2.0)
    assert guard.skipped == [2, 5]


def test_zero_budget_stops_at_the_first_bad_step():
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 3: loss=inf, l1=0\.1"):
        NonFiniteGuard().finite(3, loss=float("inf"), l1=0.1)


def _poison(monkeypatch, bad_calls: set[int]) -> None:
    """Make the prior's training loss NaN on the given (1-based) training calls."""
    real_loss, calls = AutoregressivePrior.loss, [0]

    def loss(self, z0, generator=None):
        out = real_loss(self, z0, generator)
        if self.training:
            calls[0] += 1
            if calls[0] in bad_calls:
                nan = out[0] * float("nan")
                return nan, nan.detach()
        return out

    monkeypatch.setattr(AutoregressivePrior, "loss", loss)


def _train(token_grid_project: Path, skip: int) -> int:
    extra = f", skip_nonfinite_steps: {skip}" if skip else ""
    (token_grid_project / PROFILE).write_text(TINY_PRIOR % extra)
    return cli.main(["--profile", PROFILE, "train-prior", "autoregressive_mnist"])


def test_nan_loss_stops_keeps_state_and_resumes_with_a_skip_budget(
    token_grid_project, monkeypatch, capsys
):
    _poison(monkeypatch, bad_calls={8})
    assert _train(token_grid_project, skip=0) == 3
    err = capsys.readouterr().err
    assert "twostage: error: non-finite loss at step 8: loss=nan, elbo=nan" in err
    assert "Traceback" not in err
    assert not (OUT / "model.pt").exists() and not (OUT / "metrics.json").exists()
    assert load_torch(STATE)["step"] == 5  # the last good state, before the bad step

    # Allow one bad step: the rerun resumes at step 6 (the budget is not in the
    # state's fingerprint), skips step 8 (the 3rd call now) and finishes.
    _poison(monkeypatch, bad_calls={3})
    assert _train(token_grid_project, skip=1) == 0
    metrics = json.loads((OUT / "metrics.json").read_text())
    assert metrics["skipped_nonfinite_steps"] == 1 and math.isfinite(metrics["val_bits_per_token"])
    rows = (OUT / "train_log.csv").read_text().splitlines()
    assert rows[8].startswith("8,nan,nan") and len(rows) == 13
    assert not STATE.exists()
