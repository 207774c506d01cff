"""Absorbing (masked) discrete diffusion over token grids (METHODS.md §3).

Forward process: at time t ∈ {1..T} every token is independently replaced by
the mask token m = K with probability t/T. The denoiser predicts p(z_0 | z_t)
at every position; only masked positions carry loss.

ELBO (eq. 4.3), in nats per sequence, with t uniform on {1..T}:
    −log p(z_0) ≤ T · E_t E_q [ (1/t) Σ_{i masked} −log p_θ([z_0]_i | z_t) ]
(T · E_t[·] = Σ_t, the sum over all time steps). Reported in bits per token
(divided by L · ln 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from twostage.models.priors.transformer import Transformer

LOSS_TYPES = ("reweighted_elbo", "elbo")


class AbsorbingDiffusion(nn.Module):
    def __init__(self, spec: dict, codebook_size: int, length: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.mask_id = codebook_size  # the absorbing state is one extra input token
        self.length = length
        self.num_timesteps = length  # T = L, as in the paper
        self.loss_type = spec["loss_type"]
        self.denoiser = Transformer(
            vocab_in=codebook_size + 1,
            vocab_out=codebook_size,
            length=length,
            n_layer=spec["n_layer"],
            n_head=spec["n_head"],
            n_embd=spec["n_embd"],
            dropout=spec["dropout"],
        )

    def q_sample(
        self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each token independently with probability t/T; return (z_t, mask)."""
        u = torch.rand(z0.shape, generator=generator, device=z0.device)
        mask = u < (t.float() / self.num_timesteps)[:, None]
        return torch.where(mask, torch.full_like(z0, self.mask_id), z0), mask

    def masked_nll(self, z0: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Σ over masked positions of −log p_θ([z_0]_i | z_t), per sequence (nats)."""
        logits = self.denoiser(zt)
        nll = F.cross_entropy(logits.transpose(1, 2), z0, reduction="none")
        return (nll * mask).sum(1)

    def sample_time(self, batch: int, device, generator: torch.Generator | None = None):
        return torch.randint(
            1, self.num_timesteps + 1, (batch,), device=device, generator=generator
        )

    def loss(
        self, z0: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, ELBO estimate) for a batch, both in bits per token."""
        t = self.sample_time(z0.shape[0], z0.device, generator)
        zt, mask = self.q_sample(z0, t, generator)
        nll = self.masked_nll(z0, zt, mask)
        to_bits = 1.0 / (math.log(2) * self.length)
        elbo = self.num_timesteps * nll / t  # T·(1/t)·Σ: one-sample estimate of the sum over t
        if self.loss_type == "elbo":
            train = elbo
        else:  # eq. 4.5: weight (T − t + 1)/T in place of 1/t; lower variance, same optimum
            train = (self.num_timesteps - t + 1).float() / self.num_timesteps * nll
        return train.mean() * to_bits, elbo.mean().detach() * to_bits

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        on_step: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Reverse process from all-masked, in ``steps`` network calls (S = T is the full chain).

        At step t = S, …, 1 each still-masked token is revealed with probability
        1/t, its value drawn from softmax(logits / τ); t = 1 reveals the rest.
        """
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in 1..{self.num_timesteps}, got {steps}")
        z = torch.full((n, self.length), self.mask_id, dtype=torch.long, device=device)
        for t in range(steps, 0, -1):
            still_masked = z == self.mask_id
            u = torch.rand(z.shape, generator=generator, device=device)
            reveal = still_masked & (u < 1.0 / t)
            logits = self.denoiser(z) / temperature
            probs = F.softmax(logits.float(), dim=-1).view(-1, self.codebook_size)
            draw = torch.multinomial(probs, 1, generator=generator).view(n, self.length)
            z = torch.where(reveal, draw, z)
            if on_step is not None:
                on_step(t)
        return z
