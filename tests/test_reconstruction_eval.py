"""Reconstruction evaluation of stage 1: known-answer pixel metrics, and the CLI stage on a
tiny trained VQ-GAN (adversarial loss on), with LPIPS reported as unavailable offline."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from twostage.evaluate.reconstruction import pixel_errors, save_usage_plot

PROFILE = "params/profiles/recon-test.yaml"
OVERRIDES = """\
autoencoders:
  vqgan_mnist: {nf: 8, res_blocks: 0, codebook_size: 32, emb_dim: 16, steps: 12, eval_every: 6,
                disc_start_step: 7, warmup_steps: 2, dead_code_reinit_every: 4}
evaluation:
  classifier: {steps: 10}
"""


def test_pixel_errors_known_answer():
    a = np.zeros((2, 4, 4, 1), dtype=np.uint8)
    b = np.full_like(a, 51)  # 51/255 = 0.2 everywhere
    errors = pixel_errors(a, b)
    assert errors["mse"] == pytest.approx(0.04)
    assert errors["psnr"] == pytest.approx(10 * math.log10(1 / 0.04))


def test_usage_plot_is_written(tmp_path: Path):
    save_usage_plot(str(tmp_path / "u.png"), np.array([[0, 0, 3]]), codebook_size=8)
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_evaluate_reconstruction_stage(tmp_path: Path, repo: Path, tool_env: dict):
    shutil.copytree(repo / "params", tmp_path / "params")
    (tmp_path / PROFILE).write_text(OVERRIDES)
    env = {**tool_env, "TWOSTAGE_THREADS": "1"}
    for stage, name in [
        ("prepare-data", "mnist5k"),
        ("train-classifier", "mnist5k"),
        ("extract-features", "mnist5k"),
        ("train-autoencoder", "vqgan_mnist"),
        ("evaluate-reconstruction", "vqgan_mnist"),
    ]:
        cmd = ["twostage", "--profile", PROFILE, stage, name]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]

    trained = tmp_path / "results/autoencoders/vqgan_mnist"
    log = (trained / "train_log.csv").read_text().splitlines()
    assert "d_loss" in log[0] and log[7].split(",")[0] == "7"
    ckpt = torch.load(trained / "model.pt", map_location="cpu", weights_only=True)
    assert "discriminator" in ckpt

    out = tmp_path / "results/eval/autoencoders/vqgan_mnist"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lpips"] is None and "perceptual_weights" in metrics["lpips_unavailable"]
    assert metrics["codebook_size"] == 32 and 1 <= metrics["used_codes"] <= 32
    assert 1 <= metrics["perplexity"] <= metrics["used_codes"] + 1e-9
    assert metrics["fd_classifier"] > 0 and 0 < metrics["mse"] < 1
    # The stage-1 ceiling row: the reconstructions scored like the calibration rows.
    ceiling = metrics["decoded_val_vs_train"]
    assert ceiling["fd_classifier"] > 0 and ceiling["protocol"]["reference"] == "train"
    assert all(0 <= ceiling[k] <= 1 for k in ("precision", "recall", "coverage"))
    for picture in ("usage.png", "recon_grid.png"):
        assert (out / picture).stat().st_size > 0
