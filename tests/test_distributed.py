"""Data-parallel prior training: 2 processes under torchrun (gloo, CPU) follow the same loss
trajectory as one process with the same global batch."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from twostage.config import ConfigError, load_params
from twostage.train.distributed import Context, needs_launch

PROFILE = "params/profiles/ddp-test.yaml"
OVERRIDES = """\
distributed: {nproc: %d, backend: gloo}
priors:
  autoregressive_mnist: {n_layer: 1, n_embd: 32, n_head: 2, steps: 12, eval_every: 6,
                         warmup_steps: 2, batch_size: %d}
"""


def _project(root: Path, repo: Path, nproc: int, batch_size: int = 16) -> Path:
    shutil.copytree(repo / "params", root / "params")
    (root / PROFILE).write_text(OVERRIDES % (nproc, batch_size))
    rng = np.random.default_rng(0)
    latents = root / "results/latents/vq_mnist"
    latents.mkdir(parents=True)
    for split, n in (("train", 64), ("val", 16)):
        np.save(latents / f"{split}.npy", rng.integers(0, 128, (n, 4, 4)).astype(np.int16))
    return root


def _train(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["twostage", "--profile", PROFILE, "train-prior", "autoregressive_mnist"],
        cwd=root,
        env={**env, "TWOSTAGE_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _losses(root: Path) -> np.ndarray:
    with open(root / "results/priors/autoregressive_mnist/train_log.csv") as f:
        return np.array([float(row["loss"]) for row in csv.DictReader(f)])


def test_shards_split_the_global_batch_in_order():
    batch = np.arange(8)
    assert Context(0, 2).shard(batch).tolist() == [0, 1, 2, 3]
    assert Context(1, 2).shard(batch).tolist() == [4, 5, 6, 7]
    assert Context().shard(batch).tolist() == list(range(8))


def test_only_the_user_process_launches(repo: Path, monkeypatch):
    params = load_params(root=repo)
    params.data["distributed"] = {"nproc": 2}
    assert needs_launch(params, "train-prior") and not needs_launch(params, "sample")
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside torchrun: run, do not launch again
    assert not needs_launch(params, "train-prior")


@pytest.mark.slow
def test_two_processes_follow_the_single_process_trajectory(tmp_path, repo, tool_env):
    single = _project(tmp_path / "single", repo, nproc=1)
    double = _project(tmp_path / "ddp", repo, nproc=2)
    for root in (single, double):
        proc = _train(root, tool_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and "--nproc_per_node=2" in proc.stderr
    a, b = _losses(single), _losses(double)
    assert len(a) == len(b) == 12 and a[-1] < a[0]
    # The same updates up to float summation order (gradients are averaged over two halves).
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    metrics = json.loads((double / "results/priors/autoregressive_mnist/metrics.json").read_text())
    assert metrics["processes"] == 2
    assert not list((double / ".twostage-state").rglob("*.pt"))


def test_batch_not_divisible_by_processes_is_a_config_error(tmp_path, repo):
    root = _project(tmp_path, repo, nproc=2, batch_size=15)
    with pytest.raises(
        ConfigError,
        match=r"ddp-test\.yaml: priors\.autoregressive_mnist\.batch_size: 15 is not divisible",
    ):
        load_params([PROFILE], root=root)
