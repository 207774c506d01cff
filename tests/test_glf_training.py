"""GLF's and VAE + flow's joint training in-process on random images: they write their
artifacts, and a run interrupted after a saved state resumes to the same weights as an
uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from twostage import paths
from twostage.artifacts import load_torch, read_json, remove, save_npz
from twostage.config import load_params
from twostage.sample.continuous import load_decoder
from twostage.train import glf, vae_flow
from twostage.train.resume import ResumableState

pytestmark = pytest.mark.slow  # ~15 s: short joint trainings

OVERRIDES = {
    "checkpoint_every": 4,
    "autoencoders": {
        "ae_mnist": {"channels": [4, 8], "fc_dim": 16, "batch_size": 16},
        "vae_mnist": {"channels": [4, 8], "fc_dim": 16, "batch_size": 16},
    },
    "priors": {
        "glf_mnist": {"hidden": 8, "blocks": 2, "steps": 8, "eval_every": 4, "batch_size": 16},
        "flow_vae_mnist": {"hidden": 8, "blocks": 2, "steps": 8, "eval_every": 4, "batch_size": 16},
    },
}


@pytest.fixture
def project(tmp_path: Path, repo: Path, monkeypatch) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    (tmp_path / "params/profiles/tiny.yaml").write_text(yaml.safe_dump(OVERRIDES))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 32)):
        images = rng.integers(0, 256, (n, 32, 32, 1), dtype=np.uint8)
        save_npz(paths.data("mnist5k")[split], images=images, labels=np.zeros(n, dtype=np.int64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-for-bit reproducible
    yield tmp_path
    torch.set_num_threads(threads)


def _finished(name: str) -> None:
    """What the CLI does once a job has written everything: drop its training state."""
    remove(paths.training_state("train_prior", name))


def _train(params) -> tuple[dict, dict]:
    metrics = glf.train_glf(params, "glf_mnist")
    _finished("glf_mnist")
    ckpt = load_torch(paths.prior("glf_mnist")["model"])
    return metrics, ckpt


def _interrupt_then_rerun(monkeypatch, train):
    """Run ``train`` until its first saved resumable state, kill it there, then rerun it."""
    original_save = ResumableState.save

    def save_then_die(self, step, **objects):
        original_save(self, step, **objects)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResumableState, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(ResumableState, "save", original_save)
    return train()


def test_glf_saves_flow_and_autoencoder_and_resumes_identically(project: Path, monkeypatch):
    params = load_params(["params/profiles/tiny.yaml"])
    clean_metrics, clean = _train(params)
    assert set(clean["autoencoder"]) >= {"spec", "state_dict", "channels", "resolution"}
    assert read_json(paths.prior("glf_mnist")["metrics"])["stop_gradient"] is True

    # Interrupt: stop right after the state of step 4 is saved, then rerun.
    resumed_metrics, resumed = _interrupt_then_rerun(monkeypatch, lambda: _train(params))

    for name, tensor in clean["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][name]), name
    for name, tensor in clean["autoencoder"]["state_dict"].items():
        assert torch.equal(tensor, resumed["autoencoder"]["state_dict"][name]), name
    clean_metrics.pop("train_time_s")
    resumed_metrics.pop("train_time_s")
    assert clean_metrics == resumed_metrics


def test_vae_flow_trains_jointly_saves_its_vae_and_resumes_identically(project: Path, monkeypatch):
    params = load_params(["params/profiles/tiny.yaml"])
    name = "flow_vae_mnist"

    def train():
        metrics = vae_flow.train_vae_flow(params, name)
        _finished(name)
        return metrics, load_torch(paths.prior(name)["model"])

    clean_metrics, clean = train()
    assert clean["kind"] == "vae_flow" and clean["autoencoder"]["kind"] == "vae"
    # The validation ELBO is a finite bound in nats, reported under the plain VAE's keys.
    assert (
        np.isfinite(clean_metrics["vae_val_elbo_nats"]) and clean_metrics["vae_val_elbo_nats"] < 0
    )
    assert clean_metrics["vae_val_neg_elbo_bits_per_pixel"] > 0
    log = (project / paths.prior(name)["curve"]).read_text().splitlines()
    assert log[0].split(",")[:6] == ["step", "loss", "recon", "kl", "log_q", "log_prior"]
    assert len(log) == 1 + 8
    # Sampling decodes with the jointly trained VAE, not the stage-1 one.
    decoder = load_decoder(params, name, torch.device("cpu"))
    for key, tensor in clean["autoencoder"]["state_dict"].items():
        assert torch.equal(decoder.state_dict()[key], tensor), key

    resumed_metrics, resumed = _interrupt_then_rerun(monkeypatch, train)
    for key, tensor in clean["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key
    for key, tensor in clean["autoencoder"]["state_dict"].items():
        assert torch.equal(tensor, resumed["autoencoder"]["state_dict"][key]), key
    clean_metrics.pop("train_time_s")
    resumed_metrics.pop("train_time_s")
    assert clean_metrics == resumed_metrics


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_a_diverging_regularized_glf_is_recorded_not_crashed(
    project: Path, monkeypatch, stop_gradient: bool
):
    """Without the stop-gradient, a non-finite loss is the paper's finding: training stops,
    the last finite weights are saved and metrics.json says where. With it, the stage fails."""
    profile = yaml.safe_load((project / "params/profiles/tiny.yaml").read_text())
    profile["priors"]["glf_mnist"]["stop_gradient"] = stop_gradient
    (project / "params/profiles/tiny.yaml").write_text(yaml.safe_dump(profile))
    params = load_params(["params/profiles/tiny.yaml"])
    real_loss, calls = glf.glf_loss, []

    def loss_turning_nan(*args, **kwargs):
        calls.append(1)
        loss, recon, nll = real_loss(*args, **kwargs)
        if len(calls) == 6:
            nll = nll * float("nan")
            loss = loss + nll
        return loss, recon, nll

    monkeypatch.setattr(glf, "glf_loss", loss_turning_nan)
    if stop_gradient:
        with pytest.raises(FloatingPointError, match="step 6"):
            glf.train_glf(params, "glf_mnist")
        return
    metrics, ckpt = _train(params)
    assert metrics["diverged_at_step"] == 6 and metrics["trained_steps"] == 5
    assert ckpt["step"] == 5
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert np.isfinite(metrics["flow_val_nll_bits_per_dim"])
    log = (project / paths.prior("glf_mnist")["curve"]).read_text().splitlines()
    assert len(log) == 1 + 6 and "nan" in log[-1].lower()
    header = log[0].split(",")
    assert {"nll", "latent_std", "val_latent_std"} <= set(header)
