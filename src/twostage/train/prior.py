"""Stage 2: train the absorbing-diffusion prior on the cached token grids.

The checkpoint kept is the one with the best validation ELBO, which is how the
paper stops training before the prior over-fits.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import load_torch, save_torch, write_json
from twostage.config import Params
from twostage.data.latents import load_tokens
from twostage.models.priors.absorbing import AbsorbingDiffusion
from twostage.runtime import pick_device, seed_everything
from twostage.train.common import (
    CurveLog,
    InfiniteBatches,
    check_finite,
    evaluation_steps,
    set_lr,
    warmup_lr,
)


@torch.no_grad()
def validation_elbo(
    model: AbsorbingDiffusion,
    tokens: torch.Tensor,
    samples: int,
    device: torch.device,
    batch_size: int = 256,
    seed: int = 1234,
) -> float:
    """Monte-Carlo ELBO over the whole validation set, in bits per token.

    A fixed generator makes successive evaluations comparable (same t and masks).
    """
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(samples):
        for start in range(0, len(tokens), batch_size):
            z0 = tokens[start : start + batch_size].to(device)
            _, elbo = model.loss(z0, generator=gen)
            total += float(elbo) * len(z0)
            count += len(z0)
    model.train()
    return total / count


def build_prior(spec: dict, codebook_size: int, length: int) -> AbsorbingDiffusion:
    return AbsorbingDiffusion(spec, codebook_size, length)


def load_prior(path: str, device: torch.device) -> AbsorbingDiffusion:
    ckpt = load_torch(path)
    model = build_prior(ckpt["spec"], ckpt["codebook_size"], ckpt["length"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def train_prior(p: Params, name: str) -> dict:
    spec = p.prior(name)
    ae = spec["autoencoder"]
    device = pick_device(p["device"])
    gen = seed_everything(p["seed"])
    train_tokens, val_tokens = load_tokens(ae, "train"), load_tokens(ae, "val")
    codebook_size = p.autoencoder(ae)["codebook_size"]
    length = train_tokens.shape[1]

    model = build_prior(spec, codebook_size, length).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    batches = InfiniteBatches(len(train_tokens), spec["batch_size"], gen)
    step_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)
    log = CurveLog(["loss", "elbo", "lr", "val_elbo"])
    eval_at = evaluation_steps(spec["steps"], spec["eval_every"])
    best = {"val_elbo": math.inf, "step": 0, "state": None}

    start = time.perf_counter()
    progress = tqdm(range(1, spec["steps"] + 1), desc=f"prior {name}", mininterval=5)
    for step in progress:
        lr = warmup_lr(step - 1, spec["lr"], spec["warmup_steps"])
        set_lr(opt, lr)
        z0 = train_tokens[batches.next_indices()].to(device)
        loss, elbo = model.loss(z0, generator=step_gen)
        check_finite(step, loss=loss, elbo=elbo)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"loss": float(loss.detach()), "elbo": float(elbo), "lr": lr}
        if step in eval_at:
            val = validation_elbo(model, val_tokens, spec["val_elbo_samples"], device)
            row["val_elbo"] = val
            progress.set_postfix(val_elbo=f"{val:.3f}")
            if val < best["val_elbo"]:
                best = {"val_elbo": val, "step": step, "state": copy.deepcopy(model.state_dict())}
        log.add(step, **row)
    train_time = time.perf_counter() - start

    out = paths.prior(name)
    save_torch(
        out["model"],
        {
            "kind": spec["kind"],
            "spec": spec,
            "codebook_size": codebook_size,
            "length": length,
            "step": best["step"],
            "state_dict": best["state"],
        },
    )
    log.write(out["curve"])
    metrics = {
        "val_elbo_bits_per_token": best["val_elbo"],
        "best_step": best["step"],
        "final_train_loss": log.rows[-1]["loss"],
        "steps": spec["steps"],
        "tokens_per_sample": length,
        "parameters": sum(q.numel() for q in model.parameters()),
        "train_time_s": train_time,
        "device": str(device),
    }
    write_json(out["metrics"], metrics)
    return metrics
