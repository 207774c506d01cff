"""Stage 1: train the VQ autoencoder (L1 reconstruction + codebook + commitment), and with
the params' options the full VQ-GAN (perceptual, adversarial, EMA, ...: train/vq_step.py).

Data-parallel under torchrun when ``distributed.nproc`` > 1 (train/distributed.py):
each rank trains on its slice of every global batch, rank 0 validates and writes."""

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
from twostage.models.autoencoders.perceptual import load_perceptual
from twostage.models.autoencoders.quantizers import codebook_stats
from twostage.models.autoencoders.vq import VQAutoencoder
from twostage.runtime import pick_device, seed_everything
from twostage.train import distributed
from twostage.train.common import (
    CurveLog,
    InfiniteBatches,
    NonFiniteGuard,
    evaluation_steps,
    step_progress,
)
from twostage.train.resume import ResumableState, fingerprint
from twostage.train.vq_step import VQTrainer, training_options


@torch.no_grad()
def vq_validation_metrics(
    model: VQAutoencoder, images: np.ndarray, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    """MSE and PSNR on [0, 1] pixel scale, plus codebook usage, over a whole split."""
    was_training = model.training
    model.eval()
    sq_err, count, codes = 0.0, 0, []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        recon, _, idx = model(x)
        # Compare the quantised uint8 output, i.e. what a user would save.
        recon01 = torch.from_numpy(to_uint8(recon)).float() / 255
        x01 = torch.from_numpy(images[start : start + batch_size]).float() / 255
        sq_err += float((recon01 - x01).pow(2).sum())
        count += x01.numel()
        codes.append(idx.cpu())
    model.train(was_training)
    mse = sq_err / count
    return {
        "val_mse": mse,
        "val_psnr": 10 * math.log10(1.0 / max(mse, 1e-12)),
        **codebook_stats(torch.cat(codes), model.quantizer.codebook_size),
    }


def _train_vq_autoencoder(p: Params, name: str, ctx: distributed.Context) -> dict:
    spec = p.autoencoder(name)
    dataset = spec["dataset"]
    ds_spec = p.dataset(dataset)
    device = ctx.device(pick_device(p["device"]))
    gen = seed_everything(p["seed"])
    train_images, _ = load_split(dataset, "train")
    val_images, _ = load_split(dataset, "val")

    model = VQAutoencoder(spec, ds_spec["channels"], ds_spec["resolution"]).to(device)
    perceptual = None
    if training_options(spec)["perceptual_weight"] > 0:
        perceptual = load_perceptual(spec, name).to(device)
    guard = NonFiniteGuard(spec["skip_nonfinite_steps"])
    trainer = VQTrainer(model, spec, ds_spec["channels"], device, perceptual, guard, ctx)
    batches = InfiniteBatches(len(train_images), spec["batch_size"], gen)
    train_x = torch.from_numpy(train_images)  # uint8 in memory; converted per batch
    log = CurveLog([*trainer.log_columns(), "val_mse", "val_psnr", "codebook_used"])
    eval_at = evaluation_steps(spec["steps"], spec["eval_every"])
    resume = ResumableState(
        "train_autoencoder",
        name,
        # The skip budget is left out: raising it after a failure resumes, not restarts.
        fingerprint(
            {k: v for k, v in spec.items() if k != "skip_nonfinite_steps"}, ds_spec, p["seed"]
        ),
        p["checkpoint_every"],
        parts={**trainer.state_parts(), "batches": batches, "log": log, "nonfinite": guard},
        generators=(gen,),
    )
    first = resume.restore()

    start = time.perf_counter()
    progress = step_progress(first, spec["steps"], f"autoencoder {name}", disable=not ctx.is_main)
    for step in progress:
        x = to_tensor(train_x[ctx.shard(batches.next_indices())].numpy(), device)
        row = trainer.step(x, step)
        # Validation decides nothing here: rank 0 alone runs it (and logs it).
        if step in eval_at and ctx.is_main:
            val = vq_validation_metrics(trainer.evaluated, val_images, device)
            row.update({k: val[k] for k in ("val_mse", "val_psnr", "codebook_used")})
            progress.set_postfix(psnr=f"{val['val_psnr']:.2f}", codes=val["codebook_used"])
        log.add(step, **row)
        if ctx.is_main:
            resume.save_if_due(step, spec["steps"])
    train_time = time.perf_counter() - start
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
    with torch.no_grad():
        # Evenly spaced picks: a split can be ordered by class (mnist5k is).
        originals = val_images[np.linspace(0, len(val_images) - 1, 32).astype(int)]
        recon = to_uint8(model(to_tensor(originals, device))[0])
    # Rows alternate: originals above their reconstructions.
    pairs = np.concatenate(
        [np.stack([originals[i : i + 8], recon[i : i + 8]]) for i in range(0, 32, 8)]
    )
    save_grid(out["recon"], pairs.reshape(-1, *originals.shape[1:]), ncol=8)
    log.write(out["curve"])
    metrics = {
        **final,
        "steps": spec["steps"],
        "skipped_nonfinite_steps": len(guard.skipped),
        "processes": ctx.world_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_time_s": train_time,
        "device": str(device),
    }
    write_json(out["metrics"], metrics)
    return metrics


train_vq_autoencoder = distributed.in_process_group(_train_vq_autoencoder)
