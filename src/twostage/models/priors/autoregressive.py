"""Autoregressive baseline (docs/methods.md): the same Transformer with a causal mask.

Tokens are modelled in raster order, p(z) = Π_i p(z_i | z_<i), so the
validation NLL is exact. Input position i sees a start token followed by
z_0..z_{i-1}; sampling draws one token per network call, reusing the attention
keys and values of earlier positions (a key/value cache), so generating L
tokens costs O(L) token evaluations instead of O(L²).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from twostage.models.priors.transformer import Transformer


class AutoregressivePrior(nn.Module):
    def __init__(self, spec: dict, codebook_size: int, length: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.start_id = codebook_size  # one extra input token opens every sequence
        self.length = length
        # Named as in the absorbing prior, so both checkpoints have the same layout.
        self.denoiser = Transformer.for_tokens(spec, codebook_size, length, causal=True)

    def _shifted(self, z0: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(z0[:, :1], self.start_id)
        return torch.cat([start, z0[:, :-1]], dim=1)

    def nll(self, z0: torch.Tensor) -> torch.Tensor:
        """Exact −log p(z0) per sequence, in nats."""
        logits = self.denoiser(self._shifted(z0))
        return F.cross_entropy(logits.transpose(1, 2), z0, reduction="none").sum(1)

    def loss(
        self, z0: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, NLL), both in bits per token; they coincide for this model."""
        bits = self.nll(z0).mean() / (math.log(2) * self.length)
        return bits, bits.detach()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        on_step: Callable[[int], None] | None = None,
        top_k: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Raster-order sampling, one network call per token (``steps`` must be L if given)."""
        if steps is not None and steps != self.length:
            raise ValueError(
                f"an autoregressive prior takes exactly {self.length} steps (one per token), "
                f"got {steps}"
            )
        z = torch.full((n, self.length), self.start_id, dtype=torch.long, device=device)
        cache: list | None = [] if use_cache else None
        step_input = torch.full((n, 1), self.start_id, dtype=torch.long, device=device)
        for i in range(self.length):
            if use_cache:
                logits = self.denoiser(step_input, cache=cache, offset=i)[:, -1]
            else:
                logits = self.denoiser(self._shifted(z)[:, : i + 1])[:, -1]
            logits = logits.float() / temperature
            if top_k is not None and top_k < self.codebook_size:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            z[:, i] = token[:, 0]
            step_input = token
            if on_step is not None:
                on_step(i)
        return z
