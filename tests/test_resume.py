"""Kill a training stage with SIGKILL mid-run, rerun it: it resumes and ends exactly where an
uninterrupted run ends (same weights, same metrics), on CPU with a fixed seed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

PROFILE = "params/profiles/resume-test.yaml"
OVERRIDES = """\
checkpoint_every: 20
autoencoders:
  vq_mnist: {nf: 8, res_blocks: 0, codebook_size: 32, emb_dim: 16, steps: 160, eval_every: 80}
priors:
  absorbing_mnist: {n_layer: 1, n_embd: 32, n_head: 2, steps: 160, eval_every: 40,
                    warmup_steps: 10, val_elbo_samples: 1, sample_fd_images: 0,
                    select_by: val_bound}
"""


def _cli(root: Path, env: dict, *args: str) -> list[str]:
    return ["twostage", "--profile", PROFILE, *args]


def _run(root: Path, env: dict, *args: str) -> None:
    proc = subprocess.run(_cli(root, env, *args), cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _kill_after_first_state(root: Path, env: dict, state: Path, *args: str) -> None:
    proc = subprocess.Popen(
        _cli(root, env, *args),
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the stage finished or failed before saving any state"


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    metrics.pop("train_time_s")  # wall time is the one thing allowed to differ
    return metrics


@pytest.fixture(scope="module")
def projects(tmp_path_factory, repo: Path, tool_env: dict):
    env = {**tool_env, "TWOSTAGE_THREADS": "1"}  # one thread: bit-for-bit reproducible
    roots = []
    for name in ("uninterrupted", "killed"):
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(repo / "params", root / "params")
        (root / PROFILE).write_text(OVERRIDES)
        roots.append(root)
    _run(roots[0], env, "prepare-data", "mnist5k")
    shutil.copytree(roots[0] / "results", roots[1] / "results")
    return roots[0], roots[1], env


def test_autoencoder_resumes_to_identical_weights(projects):
    clean, killed, env = projects
    _run(clean, env, "train-autoencoder", "vq_mnist")
    state = killed / ".twostage-state/train_autoencoder/vq_mnist.pt"
    _kill_after_first_state(killed, env, state, "train-autoencoder", "vq_mnist")
    assert not (killed / "results/autoencoders/vq_mnist/model.pt").exists()
    _run(killed, env, "train-autoencoder", "vq_mnist")
    assert not state.exists()  # cleared once the outputs are written
    out = "results/autoencoders/vq_mnist"
    a, b = _weights(clean / out / "model.pt"), _weights(killed / out / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(clean / out / "metrics.json") == _metrics(killed / out / "metrics.json")
    curve = "train_log.csv"
    assert (clean / out / curve).read_text() == (killed / out / curve).read_text()


def test_prior_resumes_to_identical_weights(projects):
    clean, killed, env = projects
    if not (clean / "results/autoencoders/vq_mnist/model.pt").exists():
        _run(clean, env, "train-autoencoder", "vq_mnist")
    _run(clean, env, "encode", "vq_mnist")
    shutil.rmtree(killed / "results")
    shutil.copytree(clean / "results", killed / "results")
    _run(clean, env, "train-prior", "absorbing_mnist")
    state = killed / ".twostage-state/train_prior/absorbing_mnist.pt"
    _kill_after_first_state(killed, env, state, "train-prior", "absorbing_mnist")
    _run(killed, env, "train-prior", "absorbing_mnist")
    out = "results/priors/absorbing_mnist"
    a, b = _weights(clean / out / "model.pt"), _weights(killed / out / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(clean / out / "metrics.json") == _metrics(killed / out / "metrics.json")


def test_state_from_other_params_is_ignored(projects, tmp_path: Path):
    clean, _, env = projects
    from twostage.train.resume import ResumableState

    old = ResumableState("train_prior", "x", "fingerprint-a", every=10)
    old.path = tmp_path / "x.pt"
    old.save(30, model={})
    new = ResumableState("train_prior", "x", "fingerprint-b", every=10)
    new.path = old.path
    assert new.load() is None and old.load()["step"] == 30
