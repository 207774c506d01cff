"""One optimisation step of the stage-1 VQ(-GAN) (eq. 4.2 and 4.12; docs/methods.md, "Stage 1").

Every option of ``params/autoencoders.yaml`` beyond the plain VQ autoencoder is
off unless set, and then this step is exactly L1 + codebook + commitment:

- perceptual term w_p · LPIPS(x, x̂) added to the reconstruction loss;
- adversarial term λ · hinge_G from ``disc_start_step`` on, λ adapted at the
  decoder's last layer and clamped at ``disc_weight_max``; the discriminator
  (its own optimizer) is updated only from then on, on DiffAugmented inputs;
- Gumbel temperature annealing, LR warm-up, gradient clipping, EMA of weights,
  fp16 autocast with loss scaling on CUDA.

Data-parallel (``ctx`` from train/distributed.py): ``x`` is this rank's slice of
the global batch. The autoencoder and the discriminator are each wrapped in
DistributedDataParallel (gradients averaged over ranks), the discriminator's
batch norms use global-batch statistics, λ is computed from the ranks' averaged
gradients, and the loss terms are averaged before the non-finite check and the
log: every rank takes the same decisions and ends with the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twostage.models.autoencoders.diffaug import diff_augment
from twostage.models.autoencoders.discriminator import (
    PatchDiscriminator,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from twostage.models.autoencoders.quantizers import gumbel_temperature
from twostage.train import common, distributed
from twostage.train.common import NonFiniteGuard, moving_average, set_lr, warmup_lr


def training_options(spec: dict) -> dict:
    """``spec`` (its defaults filled from the schema) with the two defaults that depend on
    other keys: the discriminator's learning rate is ``lr``, the Gumbel temperature anneals
    over all training steps."""
    options = {"disc_lr": spec["lr"], **spec}
    if spec["quantizer"] == "gumbel":
        options["gumbel"] = {"anneal_steps": spec["steps"], **spec["gumbel"]}
    return options


def log_columns(options: dict, perceptual: bool = True) -> list[str]:
    """The loss terms a step of these ``training_options`` logs (``perceptual``: False when
    its network is not given)."""
    columns = ["loss", "l1", "codebook"]
    columns += ["perceptual"] if perceptual and options["perceptual_weight"] > 0 else []
    columns += ["g_loss", "disc_weight", "d_loss"] if options["adversarial"] else []
    columns += ["temperature"] if options["quantizer"] == "gumbel" else []
    return columns


class VQTrainer:
    """Models, optimizers, scaler and EMA of one stage-1 run, and its training step."""

    def __init__(
        self,
        model: nn.Module,
        spec: dict,
        channels: int,
        device: torch.device,
        perceptual: nn.Module | None = None,
        guard: NonFiniteGuard | None = None,
        ctx: distributed.Context | None = None,
    ):
        self.o = o = training_options(spec)
        self.model, self.device = model, device
        self.ctx = ctx if ctx is not None else distributed.Context()
        self.guard = guard if guard is not None else NonFiniteGuard(0)
        self.perceptual = perceptual if o["perceptual_weight"] > 0 else None
        self.opt = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=(0.5, 0.9))
        self.disc = self.opt_d = None
        if o["adversarial"]:
            self.disc = PatchDiscriminator(channels, o["disc_ndf"], o["disc_layers"]).to(device)
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=o["disc_lr"], betas=(0.5, 0.9))
        # Calls through these synchronise gradients (DDP); both are the modules in one process.
        self.model_step = distributed.data_parallel_module(model, self.ctx, device)
        self.disc_step = (
            distributed.data_parallel_module(self.disc, self.ctx, device) if self.disc else None
        )
        # fp16 autocast with loss scaling on CUDA only: this project's CPUs emulate bf16 slowly.
        self.amp = o["amp"] and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = moving_average(model, o["ema_decay"])

    @property
    def evaluated(self) -> nn.Module:
        """The weights used for evaluation and saved for sampling: the EMA when enabled."""
        return common.evaluated(self.model, self.ema)

    def log_columns(self) -> list[str]:
        return log_columns(self.o, self.perceptual is not None)

    def state_parts(self) -> dict:
        """Everything a resumed run must get back (for train/resume.py)."""
        parts = {"model": self.model, "optimizer": self.opt, "scaler": self.scaler}
        if self.disc is not None:
            parts.update(discriminator=self.disc, disc_optimizer=self.opt_d)
        if self.ema is not None:
            parts["ema"] = self.ema.model
        return parts

    def adversarial_on(self, step: int) -> bool:
        return self.disc is not None and step >= self.o["disc_start_step"]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

    def _update(self, loss: torch.Tensor, opt: torch.optim.Optimizer, module: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.o["grad_clip"] > 0:
            self.scaler.unscale_(opt)  # clip the true gradient, not the scaled one
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.o["grad_clip"])
        self.scaler.step(opt)

    def step(self, x: torch.Tensor, step: int) -> dict[str, float]:
        """Train on batch ``x`` (B×C×H×W in [-1, 1]) at 1-based ``step``; return the loss terms."""
        o = self.o
        set_lr(self.opt, warmup_lr(step - 1, o["lr"], o["warmup_steps"]))
        row: dict[str, float] = {}
        if o["quantizer"] == "gumbel":
            g = o["gumbel"]
            tau = gumbel_temperature(step - 1, g["tau_start"], g["tau_end"], g["anneal_steps"])
            self.model.quantizer.temperature = row["temperature"] = tau
        adversarial = self.adversarial_on(step)

        ctx = self.ctx
        with self._autocast():
            recon, codebook_loss, _ = self.model_step(x)
            l1 = F.l1_loss(recon, x)
            rec = l1
            if self.perceptual is not None:
                perceptual = self.perceptual(x, recon).mean()
                rec = l1 + o["perceptual_weight"] * perceptual
            loss = rec + codebook_loss
            if adversarial:
                # Not through disc_step: these discriminator gradients are discarded.
                g_loss = hinge_g_loss(self.disc(diff_augment(recon, o["diffaug"])))
                last = self.model.decoder.last_layer.weight
                weight = adaptive_weight(rec, g_loss, last, o["disc_weight_max"], average=ctx.mean)
                loss = loss + weight * g_loss
                row["disc_weight"] = float(weight)
        # Averaged over ranks: the global batch's terms, and the same decisions on every rank.
        terms = {"loss": loss, "l1": l1, "codebook": codebook_loss}
        if self.perceptual is not None:
            terms["perceptual"] = perceptual
        if adversarial:
            terms["g_loss"] = g_loss
        terms = ctx.means(**terms)
        row.update({k: float(v) for k, v in terms.items()})
        checked = {k: terms[k] for k in ("loss", "l1", "codebook")}
        if not self.guard.finite(step, **checked):
            return row  # a skipped step updates nothing, the discriminator included
        self._update(loss, self.opt, self.model)

        if adversarial:
            set_lr(self.opt_d, warmup_lr(step - 1, o["disc_lr"], o["warmup_steps"]))
            with self._autocast():
                fake = recon.detach()
                d_loss = hinge_d_loss(
                    self.disc_step(diff_augment(x, o["diffaug"])),
                    self.disc_step(diff_augment(fake, o["diffaug"])),
                )
            mean_d_loss = ctx.mean(d_loss)
            row["d_loss"] = float(mean_d_loss)
            if self.guard.finite(step, d_loss=mean_d_loss):
                self._update(d_loss, self.opt_d, self.disc)
        self.scaler.update()
        if self.ema is not None and step % o["ema_every"] == 0:
            self.ema.update(self.model)
        return row
