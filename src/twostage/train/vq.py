"""Stage 1: train the VQ autoencoder (L1 reconstruction + codebook + commitment), and with
the params' options the full VQ-GAN (perceptual, adversarial, EMA, ...: train/vq_step.py).

Data-parallel under torchrun when ``distributed.nproc`` > 1 (train/distributed.py):
each rank trains on its slice of every global batch, rank 0 validates and writes."""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.models.autoencoders.perceptual import load_perceptual
from twostage.models.autoencoders.quantizers import codebook_stats
from twostage.models.autoencoders.vq import VQAutoencoder
from twostage.train import distributed
from twostage.train.common import InfiniteBatches
from twostage.train.reconstruction import reconstruction_metrics, save_reconstructions
from twostage.train.scaffold import Training
from twostage.train.vq_step import VQTrainer, log_columns, training_options


def vq_validation_metrics(
    model: VQAutoencoder, images: np.ndarray, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """MSE and PSNR on [0, 1] pixel scale, plus codebook usage, over a whole split."""
    codes = []

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        recon, _, idx = model(x)
        codes.append(idx.cpu())
        return recon

    metrics = reconstruction_metrics(model, images, device, batch_size, reconstruct)
    return {**metrics, **codebook_stats(torch.cat(codes), model.quantizer.codebook_size)}


@distributed.in_process_group
def train_vq_autoencoder(p: Params, name: str, ctx: distributed.Context) -> dict:
    spec = p.autoencoder(name)
    ds_spec = p.dataset(spec["dataset"])
    columns = [*log_columns(training_options(spec)), "val_mse", "val_psnr", "codebook_used"]
    run = Training(p, "train_autoencoder", name, spec, columns, ctx)
    device = run.device
    train_images, _ = load_split(spec["dataset"], "train")
    val_images, _ = load_split(spec["dataset"], "val")

    model = VQAutoencoder(spec, ds_spec["channels"], ds_spec["resolution"]).to(device)
    perceptual = None
    if training_options(spec)["perceptual_weight"] > 0:
        perceptual = load_perceptual(spec, name).to(device)
    trainer = VQTrainer(model, spec, ds_spec["channels"], device, perceptual, run.guard, ctx)
    batches = InfiniteBatches(len(train_images), spec["batch_size"], run.gen)
    train_x = torch.from_numpy(train_images)  # uint8 in memory; converted per batch
    run.resume({**trainer.state_parts(), "batches": batches}, tied_to=(ds_spec,))

    for step in run.steps(f"autoencoder {name}"):
        x = to_tensor(train_x[ctx.shard(batches.next_indices())].numpy(), device)
        row = trainer.step(x, step)
        # Validation decides nothing here: rank 0 alone runs it (and logs it).
        if step in run.eval_at and ctx.is_main:
            val = vq_validation_metrics(trainer.evaluated, val_images, device)
            row.update({k: val[k] for k in ("val_mse", "val_psnr", "codebook_used")})
            run.progress.set_postfix(psnr=f"{val['val_psnr']:.2f}", codes=val["codebook_used"])
        run.log_step(step, row)
    modules = [trainer.model, *([trainer.disc] if trainer.disc is not None else [])]
    ctx.check_replicas(*modules, *([trainer.ema.model] if trainer.ema is not None else []))
    if not ctx.is_main:  # only rank 0 evaluates and writes artifacts
        return {"processes": ctx.world_size, "rank": ctx.rank}

    model = trainer.evaluated.eval()  # the EMA weights when enabled: those are sampled
    final = vq_validation_metrics(model, val_images, device)
    out = paths.autoencoder(name)
    save_torch(
        out["model"],
        {
            "kind": spec["kind"],
            "spec": spec,
            "channels": ds_spec["channels"],
            "resolution": ds_spec["resolution"],
            "state_dict": model.state_dict(),
            # Kept for fine-tuning; sampling and evaluation need only the autoencoder.
            **({"discriminator": trainer.disc.state_dict()} if trainer.disc is not None else {}),
        },
    )
    save_reconstructions(out["recon"], lambda x: model(x)[0], val_images, device)
    run.log.write(out["curve"])
    metrics = {**final, **run.tail(model)}
    write_json(out["metrics"], metrics)
    return metrics
