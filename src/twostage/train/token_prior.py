"""Stage 2: train a prior (absorbing diffusion or autoregressive) on the cached token grids.

The checkpoint kept is, by default, the one with the best validation bound (the ELBO
for the absorbing prior, the exact NLL for the autoregressive one), which is how the
paper stops training before the prior over-fits. With ``sample_fd_images`` > 0 every
evaluation also scores a small decoded sample (train/sample_quality.py), and
``select_by: sample_fd`` keeps the checkpoint whose sample scored best instead. With
``ema_decay`` > 0 the exponential moving average of the weights is what gets validated
and saved. With ``condition: class`` the prior is trained on the dataset's labels with
label dropout (models/priors/guidance.py), validated on the true labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.data.latents import load_labels, load_tokens
from twostage.kinds import KINDS
from twostage.models.priors import build_prior
from twostage.runtime import cpu_bf16_autocast, cpu_bf16_enabled
from twostage.train import distributed
from twostage.train.common import (
    BestCheckpoint,
    InfiniteBatches,
    evaluated,
    moving_average,
    scheduled_lr,
    set_lr,
)
from twostage.train.sample_quality import SampleFD
from twostage.train.scaffold import Training

logger = logging.getLogger("twostage")


@torch.no_grad()
def validation_bound(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    samples: int,
    device: torch.device,
    batch_size: int = 256,
    seed: int = 1234,
    labels: torch.Tensor | None = None,
) -> float:
    """Validation ELBO (Monte Carlo over t, ``samples`` draws) or exact NLL, in bits per token.

    A fixed generator makes successive evaluations comparable (same t and masks). A
    conditional prior is scored given the true ``labels`` (no label dropout in eval mode).
    """
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(samples):
        for start in range(0, len(tokens), batch_size):
            z0 = tokens[start : start + batch_size].to(device)
            _, elbo = model.loss(z0, generator=gen, **_classes(labels, start, batch_size, device))
            total += float(elbo) * len(z0)
            count += len(z0)
    model.train()
    return total / count


def _classes(labels, start, size, device) -> dict:
    """``classes=`` of a conditional prior's batch; nothing for an unconditional one, whose
    calls stay exactly what they were."""
    return {} if labels is None else {"classes": labels[start : start + size].to(device)}


@distributed.in_process_group
def train_token_prior(
    p: Params,
    name: str,
    ctx: distributed.Context,
    *,
    build: Callable[..., torch.nn.Module] = build_prior,
    on_evaluation: Callable[[int, torch.nn.Module, dict], None] | None = None,
) -> dict:
    """Train prior ``name``. The stage passes no hooks; bench/reference_parity.py trains
    another implementation's network through the same loop (``build``, called like
    ``build_prior``) and keeps its own selections (``on_evaluation(step, model, row)``,
    called with the evaluated model and the logged values at every evaluation)."""
    spec = p.prior(name)
    ae = spec["autoencoder"]
    columns = ["loss", "elbo", "lr", "val_bits"]
    columns += ["val_sample_fd"] if spec["sample_fd_images"] else []
    run = Training(p, "train_prior", name, spec, columns, ctx)
    device = run.device
    train_tokens, val_tokens = load_tokens(ae, "train"), load_tokens(ae, "val")
    codebook_size = p.autoencoder(ae)["codebook_size"]
    length = train_tokens.shape[1]
    train_labels = val_labels = None
    num_classes = 0
    if spec["condition"] == "class":
        train_labels = load_labels(p, ae, "train", len(train_tokens))
        val_labels = load_labels(p, ae, "val", len(val_tokens))
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1

    model = build(spec, codebook_size, length, num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    ema = moving_average(model, spec["ema_decay"])
    # fp16 autocast with loss scaling on CUDA only.
    amp = spec["amp"] and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    # bf16 autocast of the training forward on CPUs that multiply bf16 natively (opt-in:
    # it changes the numerics; emulated bf16 would be slower than float32, so it is off
    # there). Validation stays float32, so the bound is comparable either way.
    bf16_requested = spec["cpu_bf16"]
    lr_schedule = spec["lr_schedule"]
    bf16 = cpu_bf16_enabled(device, bf16_requested)
    if bf16_requested and device.type == "cpu" and not bf16 and ctx.is_main:
        logger.info("prior %s: cpu_bf16 requested, but this CPU lacks native bf16: float32", name)
    val_samples = spec["val_elbo_samples"]
    batches = InfiniteBatches(len(train_tokens), spec["batch_size"], run.gen)
    # Each rank draws its own diffusion times and masks (rank 0 alone = a single process).
    step_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1 + 7919 * ctx.rank)
    loss_of = distributed.loss_module(model, ctx, device)
    sample_fd = SampleFD(p, name, device, p["seed"]) if spec["sample_fd_images"] else None
    select_by = spec["select_by"]
    best = BestCheckpoint()
    parts = {"model": model, "optimizer": opt, "scaler": scaler, "batches": batches, "best": best}
    if ema is not None:
        parts["ema"] = ema.model
    run.resume(parts, generators=(step_gen,))

    for step in run.steps(f"prior {name}"):
        lr = scheduled_lr(step - 1, spec["lr"], spec["warmup_steps"], spec["steps"], lr_schedule)
        set_lr(opt, lr)
        rows = ctx.shard(batches.next_indices())
        z0 = train_tokens[rows].to(device)
        classes = {} if train_labels is None else {"classes": train_labels[rows].to(device)}
        with (
            torch.autocast(device.type, dtype=torch.float16, enabled=amp),
            cpu_bf16_autocast(device, bf16_requested),
        ):
            loss, elbo = loss_of(z0, generator=step_gen, **classes)
        # Averaged over ranks: every rank takes the same skip/stop decision.
        mean_loss, mean_elbo = ctx.mean(loss), ctx.mean(elbo)
        if run.guard.finite(step, loss=mean_loss, elbo=mean_elbo):
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model)
        row = {"loss": float(mean_loss), "elbo": float(mean_elbo), "lr": lr}
        if step in run.eval_at:
            scored = evaluated(model, ema)
            val = validation_bound(scored, val_tokens, val_samples, device, labels=val_labels)
            row["val_bits"] = val
            if sample_fd is not None:
                row["val_sample_fd"] = sample_fd(scored)
            run.progress.set_postfix(
                val_bound=f"{val:.3f}",
                **({"sample_fd": f"{row['val_sample_fd']:.1f}"} if sample_fd else {}),
            )
            score = row["val_sample_fd"] if select_by == "sample_fd" else val
            best.update(score, step, scored, **row)
            if on_evaluation is not None:
                on_evaluation(step, scored, row)
        run.log_step(step, row)
    metrics = {
        # An upper bound on the NLL for the absorbing prior, the exact NLL for the autoregressive.
        # A resumed state that kept no values holds the bound as its score.
        "val_bits_per_token": best.values.get("val_bits", best.val),
        "val_bound": KINDS[spec["kind"]].bound,
        "best_step": best.step,
        "selected_by": select_by,
        **({"val_sample_fd": best.values["val_sample_fd"]} if sample_fd else {}),
        **({"sample_fd_images": spec["sample_fd_images"]} if sample_fd else {}),
        "final_train_loss": run.log.rows[-1]["loss"],
        "tokens_per_sample": length,
        **run.tail(model),
        "cpu_bf16_used": bf16,  # spec cpu_bf16 on a CPU with native bf16
        **({"num_classes": num_classes} if num_classes else {}),
    }
    if not ctx.is_main:  # only rank 0 writes artifacts
        return metrics

    out = paths.prior(name)
    save_torch(
        out["model"],
        {
            "kind": spec["kind"],
            "spec": spec,
            "codebook_size": codebook_size,
            "length": length,
            "step": best.step,
            "state_dict": best.weights,
            # Only a conditional prior's checkpoint names its classes: an unconditional
            # one keeps its bytes.
            **({"num_classes": num_classes} if num_classes else {}),
        },
    )
    run.log.write(out["curve"])
    write_json(out["metrics"], metrics)
    return metrics
