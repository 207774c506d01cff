"""Stage 2 for continuous latents: fit a flow, a Gaussian mixture or take the VAE's N(0, I).

Each writes the same files as the discrete priors (model.pt, metrics.json,
train_log.csv). The likelihood keys say what they measure; the report's
``val_bits_per_token`` column holds, for every continuous prior, the NLL of the
validation latents in bits per latent dimension (``val_bound`` names it).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import load_npy, save_torch, write_json
from twostage.config import Params
from twostage.data.latents import load_labels
from twostage.data.prepare import load_split
from twostage.models.autoencoders import load_autoencoder
from twostage.models.priors.continuous import StandardNormalPrior
from twostage.models.priors.flow import build_flow
from twostage.models.priors.gmm import ClassGaussianMixtures, GaussianMixturePrior
from twostage.runtime import pick_device, seed_everything
from twostage.train.common import BestCheckpoint, CurveLog, InfiniteBatches, check_finite
from twostage.train.scaffold import Training


def load_latent_vectors(ae: str, split: str) -> torch.Tensor:
    """B × D float32 latents written by the encode stage."""
    return torch.from_numpy(
        load_npy(paths.latents(ae)[split], ndim=2, kinds="f").astype(np.float32)
    )


def bits_per_dim(log_prob_nats: float, dim: int) -> float:
    """Negative log-likelihood per latent dimension in bits, from nats per vector."""
    return -log_prob_nats / (dim * math.log(2))


@torch.no_grad()
def mean_log_prob(prior: torch.nn.Module, z: torch.Tensor, batch_size: int = 1024) -> float:
    """Average log p(z) over rows, in nats per latent vector."""
    was_training = prior.training
    prior.eval()
    total = sum(
        float(prior.log_prob(z[i : i + batch_size]).sum()) for i in range(0, len(z), batch_size)
    )
    prior.train(was_training)
    return total / len(z)


def prior_checkpoint(spec: dict, dim: int, state_dict: dict, step: int) -> dict:
    return {
        "kind": spec["kind"],
        "spec": spec,
        "latent_dim": dim,
        "step": step,
        "state_dict": state_dict,
    }


def train_flow(p: Params, name: str) -> dict:
    """Maximum likelihood on the frozen latents; keep the weights with the best validation NLL."""
    spec = p.prior(name)
    run = Training(p, "train_prior", name, spec, ["loss", "val_bits"])
    device = run.device
    z_train = load_latent_vectors(spec["autoencoder"], "train").to(device)
    z_val = load_latent_vectors(spec["autoencoder"], "val").to(device)
    dim = z_train.shape[1]
    flow = build_flow(spec, dim).to(device)
    opt = torch.optim.Adam(flow.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    batches = InfiniteBatches(len(z_train), spec["batch_size"], run.gen)
    best = BestCheckpoint()
    run.resume({"model": flow, "optimizer": opt, "batches": batches, "best": best})

    for step in run.steps(f"flow {name}"):
        loss = -flow.log_prob(z_train[batches.next_indices()]).mean() / dim  # nats per dim
        check_finite(step, loss=loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"loss": float(loss.detach())}
        if step in run.eval_at:
            row["val_bits"] = bits_per_dim(mean_log_prob(flow, z_val), dim)
            run.progress.set_postfix(val_bits=f"{row['val_bits']:.3f}")
            best.update(row["val_bits"], step, flow)
        run.log_step(step, row)

    out = paths.prior(name)
    save_torch(out["model"], prior_checkpoint(spec, dim, best.weights, best.step))
    run.log.write(out["curve"])
    metrics = {
        "flow_val_nll_bits_per_dim": best.val,
        "val_bits_per_token": best.val,
        "val_bound": "flow_exact_nll_bits_per_latent_dim",
        "best_step": best.step,
        "final_train_loss": run.log.rows[-1]["loss"],
        "latent_dim": dim,
        **run.tail(flow),
    }
    write_json(out["metrics"], metrics)
    return metrics


def train_gmm(p: Params, name: str) -> dict:
    """EM fit (scikit-learn) to the training latents, scored on the validation latents.

    With ``condition: class``, one mixture of ``components`` per class, each fitted to
    that class's latents (the validation score is then the mixture over the classes).
    """
    spec = p.prior(name)
    seed_everything(p["seed"])
    z_train = load_latent_vectors(spec["autoencoder"], "train")
    z_val = load_latent_vectors(spec["autoencoder"], "val")
    dim = z_train.shape[1]
    start = time.perf_counter()
    fit_args = (spec["components"], spec["covariance_type"], p["seed"], spec["max_iter"])
    num_classes = 0
    if spec["condition"] == "class":
        labels = load_labels(p, spec["autoencoder"], "train", len(z_train)).numpy()
        gmm = ClassGaussianMixtures.fit(z_train.numpy(), labels, *fit_args)
        num_classes = gmm.num_classes
    else:
        gmm = GaussianMixturePrior.fit(z_train.numpy(), *fit_args)
    train_time = time.perf_counter() - start
    train_ll, val_ll = mean_log_prob(gmm, z_train), mean_log_prob(gmm, z_val)
    val_bits = bits_per_dim(val_ll, dim)
    out = paths.prior(name)
    checkpoint = prior_checkpoint(spec, dim, gmm.state_dict(), 1)
    if num_classes:  # only a class-conditional fit names its classes
        checkpoint["num_classes"] = num_classes
    save_torch(out["model"], checkpoint)
    log = CurveLog(["loss", "val_bits"])  # EM has no steps: one row, the fitted model
    log.add(1, loss=-train_ll / dim, val_bits=val_bits)
    log.write(out["curve"])
    metrics = {
        "gmm_train_avg_log_likelihood": train_ll,
        "gmm_val_avg_log_likelihood": val_ll,
        "val_bits_per_token": val_bits,
        "val_bound": "gmm_exact_nll_bits_per_latent_dim",
        "latent_dim": dim,
        "components": spec["components"],
        "parameters": sum(b.numel() for b in gmm.buffers()),
        "train_time_s": train_time,
        "device": "cpu",
    }
    write_json(out["metrics"], metrics)
    return metrics


def vae_prior(p: Params, name: str) -> dict:
    """Nothing to train: N(0, I). Report the VAE's validation ELBO and the latents' NLL."""
    from twostage.train.continuous_ae import vae_elbo

    spec = p.prior(name)
    ae = spec["autoencoder"]
    device = pick_device(p["device"])
    seed_everything(p["seed"])
    start = time.perf_counter()
    model = load_autoencoder(paths.autoencoder(ae)["model"], device, p.autoencoder(ae))
    val_images, _ = load_split(p.dataset_of_autoencoder(ae), "val")
    elbo = vae_elbo(model, val_images, device, seed=p["seed"])
    z_val = load_latent_vectors(ae, "val")
    dim = z_val.shape[1]
    prior = StandardNormalPrior(dim)
    val_bits = bits_per_dim(mean_log_prob(prior, z_val), dim)
    out = paths.prior(name)
    save_torch(out["model"], prior_checkpoint(spec, dim, prior.state_dict(), 0))
    log = CurveLog(["loss", "val_bits"])
    log.add(1, loss=-elbo["val_elbo_nats"], val_bits=val_bits)
    log.write(out["curve"])
    metrics = {
        **{f"vae_{k}": v for k, v in elbo.items()},
        "val_bits_per_token": val_bits,
        "val_bound": "standard_normal_nll_bits_per_latent_dim_of_posterior_means",
        "latent_dim": dim,
        "parameters": 0,
        "train_time_s": time.perf_counter() - start,
        "device": str(device),
    }
    write_json(out["metrics"], metrics)
    return metrics
