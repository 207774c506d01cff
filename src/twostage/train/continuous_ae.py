"""Stage 1 for continuous latents: train a deterministic AE, an RAE or a VAE.

ae:  L = ||x − D(E(x))||²                                (per image, [-1, 1] scale)
rae: L = ||x − D(E(x))||² + γ ||z||² + λ ||θ_D||²         (RAE-L2 with decoder_reg = λ)
vae: L = −E_q[log p(x|z)] + β KL(q(z|x) || N(0, I))       (Bernoulli pixels, one draw)

Data-parallel under torchrun when ``distributed.nproc`` > 1 (train/distributed.py):
each rank trains on its slice of every global batch with global-batch batch norm
and the VAE's noise drawn for the global batch; rank 0 validates and writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import (
    ContinuousAutoencoder,
    decoder_l2,
    squared_error,
    vae_terms,
)
from twostage.train import distributed
from twostage.train.common import InfiniteBatches, check_finite
from twostage.train.reconstruction import (
    evaluating,
    reconstruction_metrics,
    save_reconstructions,
)
from twostage.train.scaffold import Training


def autoencoder_loss(
    model: ContinuousAutoencoder, spec: dict, x: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss of ``spec["kind"]`` and its terms (for the log).

    ``x`` may be one rank's slice of a data-parallel batch: the VAE's noise is the
    global batch's (one process: the same draw).
    """
    if model.kind == "vae":
        nll, kl = vae_terms(model, x, generator, sharded=True)
        return nll + spec["beta"] * kl, {"recon": nll, "kl": kl}
    z = model.encode(x)
    recon = squared_error(model.decode(z), x)
    loss = recon
    terms = {"recon": recon}
    if model.kind == "rae":
        terms["latent_l2"] = z.pow(2).sum(1).mean()
        loss = loss + spec["gamma"] * terms["latent_l2"]
        if spec["decoder_reg"] > 0:
            loss = loss + spec["decoder_reg"] * decoder_l2(model)
    return loss, terms


@torch.no_grad()
def elbo_metrics(
    neg_elbo: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    images: np.ndarray,
    device: torch.device,
    seed: int = 1234,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation ELBO in nats per image and −ELBO in bits/pixel, from ``neg_elbo(x, gen)``
    (a batch's mean −ELBO, one posterior draw from ``gen``: fixed noise from ``seed``)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        total += float(neg_elbo(x, gen)) * len(x)
    elbo = -total / len(images)
    pixels = int(np.prod(images.shape[1:]))
    return {"val_elbo_nats": elbo, "val_neg_elbo_bits_per_pixel": -elbo / (pixels * math.log(2))}


def vae_elbo(
    model: ContinuousAutoencoder, images: np.ndarray, device: torch.device, seed: int = 1234
) -> dict[str, float]:
    """The plain VAE's validation ELBO (:func:`elbo_metrics`), against N(0, I)."""

    def neg_elbo(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        nll, kl = vae_terms(model, x, gen)
        return nll + kl

    with evaluating(model):
        return elbo_metrics(neg_elbo, images, device, seed)


def autoencoder_checkpoint(spec: dict, ds_spec: dict, model: torch.nn.Module) -> dict:
    return {
        "kind": spec["kind"],
        "spec": spec,
        "channels": ds_spec["channels"],
        "resolution": ds_spec["resolution"],
        "state_dict": model.state_dict(),
    }


@distributed.in_process_group
def train_continuous_autoencoder(p: Params, name: str, ctx: distributed.Context) -> dict:
    spec = p.autoencoder(name)
    ds_spec = p.dataset(spec["dataset"])
    columns = ["loss", "recon", "kl", "latent_l2", "val_mse", "val_psnr", "val_elbo_nats"]
    run = Training(p, "train_autoencoder", name, spec, columns, ctx)
    device = run.device
    train_images, _ = load_split(spec["dataset"], "train")
    val_images, _ = load_split(spec["dataset"], "val")

    model = ContinuousAutoencoder(spec, ds_spec["channels"], ds_spec["resolution"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    batches = InfiniteBatches(len(train_images), spec["batch_size"], run.gen)
    noise_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)  # VAE draws
    loss_of = distributed.loss_module(
        model, ctx, device, lambda m, x: autoencoder_loss(m, spec, x, noise_gen)
    )
    train_x = torch.from_numpy(train_images)
    run.resume(
        {"model": model, "optimizer": opt, "batches": batches},
        generators=(noise_gen,),
        tied_to=(ds_spec,),
    )

    for step in run.steps(f"autoencoder {name}"):
        x = to_tensor(train_x[ctx.shard(batches.next_indices())].numpy(), device)
        loss, terms = loss_of(x)
        # Averaged over ranks: the global batch's terms; every rank stops alike.
        row = {k: float(v) for k, v in ctx.means(loss=loss, **terms).items()}
        check_finite(step, **row)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Validation decides nothing here: rank 0 alone runs it (and logs it).
        if step in run.eval_at and ctx.is_main:
            row.update(reconstruction_metrics(model, val_images, device))
            if model.kind == "vae":
                row["val_elbo_nats"] = vae_elbo(model, val_images, device)["val_elbo_nats"]
            run.progress.set_postfix(psnr=f"{row['val_psnr']:.2f}")
        run.log_step(step, row)
    ctx.check_replicas(model)
    if not ctx.is_main:  # only rank 0 evaluates and writes artifacts
        return {"processes": ctx.world_size, "rank": ctx.rank}

    model.eval()
    final = reconstruction_metrics(model, val_images, device)
    if model.kind == "vae":
        final.update(vae_elbo(model, val_images, device))
    out = paths.autoencoder(name)
    save_torch(out["model"], autoencoder_checkpoint(spec, ds_spec, model))
    save_reconstructions(out["recon"], model, val_images, device)
    run.log.write(out["curve"])
    metrics = {**final, "latent_dim": spec["latent_dim"], **run.tail(model)}
    write_json(out["metrics"], metrics)
    return metrics
