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
import time

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import save_grid, to_tensor, to_uint8
from twostage.models.autoencoders.continuous import (
    ContinuousAutoencoder,
    decoder_l2,
    squared_error,
    vae_terms,
)
from twostage.runtime import pick_device, seed_everything
from twostage.train import distributed
from twostage.train.common import (
    CurveLog,
    InfiniteBatches,
    check_finite,
    evaluation_steps,
    step_progress,
)
from twostage.train.resume import ResumableState, fingerprint


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
def reconstruction_metrics(
    model: ContinuousAutoencoder, images: np.ndarray, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """MSE and PSNR of the uint8 reconstructions on [0, 1] scale (as for the VQ autoencoder)."""
    was_training = model.training
    model.eval()
    sq_err, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        recon01 = torch.from_numpy(to_uint8(model(to_tensor(batch, device)))).float() / 255
        sq_err += float((recon01 - torch.from_numpy(batch).float() / 255).pow(2).sum())
        count += recon01.numel()
    model.train(was_training)
    mse = sq_err / count
    return {"val_mse": mse, "val_psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}


@torch.no_grad()
def vae_elbo(
    model: ContinuousAutoencoder,
    images: np.ndarray,
    device: torch.device,
    seed: int = 1234,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation ELBO in nats per image (one posterior draw, fixed noise), −ELBO in bits/pixel."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        nll, kl = vae_terms(model, x, gen)
        total += float(nll + kl) * len(x)
    model.train(was_training)
    elbo = -total / len(images)
    pixels = int(np.prod(images.shape[1:]))
    return {"val_elbo_nats": elbo, "val_neg_elbo_bits_per_pixel": -elbo / (pixels * math.log(2))}


def save_reconstructions(path: str, model, val_images: np.ndarray, device: torch.device) -> None:
    """32 evenly spaced validation images, rows of originals above their reconstructions."""
    model.eval()
    with torch.no_grad():
        originals = val_images[np.linspace(0, len(val_images) - 1, 32).astype(int)]
        recon = to_uint8(model(to_tensor(originals, device)))
    pairs = np.concatenate(
        [np.stack([originals[i : i + 8], recon[i : i + 8]]) for i in range(0, 32, 8)]
    )
    save_grid(path, pairs.reshape(-1, *originals.shape[1:]), ncol=8)


def autoencoder_checkpoint(spec: dict, ds_spec: dict, model: torch.nn.Module) -> dict:
    return {
        "kind": spec["kind"],
        "spec": spec,
        "channels": ds_spec["channels"],
        "resolution": ds_spec["resolution"],
        "state_dict": model.state_dict(),
    }


def _train_continuous_autoencoder(p: Params, name: str, ctx: distributed.Context) -> dict:
    spec = p.autoencoder(name)
    ds_spec = p.dataset(spec["dataset"])
    device = ctx.device(pick_device(p["device"]))
    gen = seed_everything(p["seed"])
    train_images, _ = load_split(spec["dataset"], "train")
    val_images, _ = load_split(spec["dataset"], "val")

    model = ContinuousAutoencoder(spec, ds_spec["channels"], ds_spec["resolution"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    batches = InfiniteBatches(len(train_images), spec["batch_size"], gen)
    noise_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)  # VAE draws
    loss_of = distributed.loss_module(
        model, ctx, device, lambda m, x: autoencoder_loss(m, spec, x, noise_gen)
    )
    train_x = torch.from_numpy(train_images)
    columns = ["loss", "recon", "kl", "latent_l2", "val_mse", "val_psnr", "val_elbo_nats"]
    log = CurveLog(columns)
    eval_at = evaluation_steps(spec["steps"], spec["eval_every"])
    resume = ResumableState(
        "train_autoencoder",
        name,
        fingerprint(spec, ds_spec, p["seed"]),
        p["checkpoint_every"],
        parts={"model": model, "optimizer": opt, "batches": batches, "log": log},
        generators=(gen, noise_gen),
    )
    first = resume.restore()

    start = time.perf_counter()
    progress = step_progress(first, spec["steps"], f"autoencoder {name}", disable=not ctx.is_main)
    for step in progress:
        x = to_tensor(train_x[ctx.shard(batches.next_indices())].numpy(), device)
        loss, terms = loss_of(x)
        # Averaged over ranks: the global batch's terms; every rank stops alike.
        row = {k: float(v) for k, v in ctx.means(loss=loss, **terms).items()}
        check_finite(step, **row)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Validation decides nothing here: rank 0 alone runs it (and logs it).
        if step in eval_at and ctx.is_main:
            row.update(reconstruction_metrics(model, val_images, device))
            if model.kind == "vae":
                row["val_elbo_nats"] = vae_elbo(model, val_images, device)["val_elbo_nats"]
            progress.set_postfix(psnr=f"{row['val_psnr']:.2f}")
        log.add(step, **row)
        if ctx.is_main:
            resume.save_if_due(step, spec["steps"])
    train_time = time.perf_counter() - start
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
    log.write(out["curve"])
    metrics = {
        **final,
        "latent_dim": spec["latent_dim"],
        "steps": spec["steps"],
        "processes": ctx.world_size,
        "parameters": sum(q.numel() for q in model.parameters()),
        "train_time_s": train_time,
        "device": str(device),
    }
    write_json(out["metrics"], metrics)
    return metrics


train_continuous_autoencoder = distributed.in_process_group(_train_continuous_autoencoder)
