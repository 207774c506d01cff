"""The priors' learning-rate schedules: linear warm-up, then constant or cosine decay."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from twostage import cli
from twostage.train.common import scheduled_lr, warmup_lr


def test_constant_is_the_warmup_schedule():
    for step in range(0, 300, 7):
        assert scheduled_lr(step, 1e-3, 100, 300) == warmup_lr(step, 1e-3, 100)


def test_cosine_shares_the_warmup_then_decays_to_a_tenth_at_the_last_step():
    lrs = [scheduled_lr(s, 1e-3, 100, 300, "cosine") for s in range(300)]
    assert lrs[:100] == [warmup_lr(s, 1e-3, 100) for s in range(100)]
    assert lrs[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[99:], lrs[100:], strict=False))  # non-increasing
    assert lrs[199] == pytest.approx(0.55e-3, rel=0.02)  # half-way: the cosine's midpoint
    assert lrs[-1] == pytest.approx(1e-4)
    assert scheduled_lr(400, 1e-3, 100, 300, "cosine") == pytest.approx(1e-4)  # held after


def test_cosine_without_warmup_and_unknown_schedules():
    assert scheduled_lr(0, 1.0, 0, 10, "cosine") < 1.0
    assert scheduled_lr(9, 1.0, 0, 10, "cosine") == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule 'linear'"):
        scheduled_lr(0, 1.0, 0, 10, "linear")


def test_train_prior_follows_the_configured_schedule(tmp_path, repo, monkeypatch):
    """`lr_schedule: cosine` in a prior's params reaches the optimizer (the log's lr column)."""
    shutil.copytree(repo / "params", tmp_path / "params")
    latents = tmp_path / "results/latents/vq_mnist"
    latents.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("val", 8)):
        np.save(latents / f"{split}.npy", rng.integers(0, 128, (n, 4, 4)).astype(np.int16))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWOSTAGE_THREADS", "1")
    profile = tmp_path / "params/profiles/lr-test.yaml"
    profile.write_text(
        "priors:\n  absorbing_mnist: {n_layer: 1, n_embd: 16, n_head: 2, steps: 6, eval_every: 6,"
        " warmup_steps: 2, batch_size: 8, val_elbo_samples: 1, lr_schedule: cosine,"
        " sample_fd_images: 0, select_by: val_bound}\n"
    )
    assert cli.main(["--profile", str(profile), "train-prior", "absorbing_mnist"]) == 0
    log = Path("results/priors/absorbing_mnist/train_log.csv").read_text().splitlines()
    rows = list(csv.DictReader(log))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == pytest.approx([scheduled_lr(s, 1e-3, 2, 6, "cosine") for s in range(6)])
    assert lrs[1] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    profile.write_text(profile.read_text().replace("cosine", "linear"))  # not a schedule
    assert cli.main(["--profile", str(profile), "train-prior", "absorbing_mnist"]) == 2
