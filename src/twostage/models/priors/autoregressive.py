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

from twostage.models.priors.guidance import Guidance, drop_labels, guided_logits
from twostage.models.priors.transformer import Transformer


class AutoregressivePrior(nn.Module):
    def __init__(self, spec: dict, codebook_size: int, length: int, num_classes: int = 0):
        super().__init__()
        self.codebook_size = codebook_size
        self.start_id = codebook_size  # one extra input token opens every sequence
        self.length = length
        # Class-conditional (num_classes > 0): labels dropped to "no class" at this rate.
        self.num_classes = num_classes
        self.label_drop = spec["label_drop"] if num_classes else 0.0
        # Named as in the absorbing prior, so both checkpoints have the same layout.
        self.denoiser = Transformer.for_tokens(
            spec, codebook_size, length, causal=True, num_classes=num_classes
        )

    def _shifted(self, z0: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(z0[:, :1], self.start_id)
        return torch.cat([start, z0[:, :-1]], dim=1)

    def nll(self, z0: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Exact −log p(z0) (or −log p(z0 | classes)) per sequence, in nats."""
        shifted = self._shifted(z0)
        logits = (
            self.denoiser(shifted) if classes is None else self.denoiser(shifted, classes=classes)
        )
        return F.cross_entropy(logits.transpose(1, 2), z0, reduction="none").sum(1)

    def loss(
        self,
        z0: torch.Tensor,
        generator: torch.Generator | None = None,
        classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, NLL), both in bits per token; they coincide for this model.

        A conditional prior takes the batch's ``classes``; in training mode each is
        dropped to "no class" with probability ``label_drop`` (guidance.py).
        """
        if classes is not None and self.training:
            classes = drop_labels(classes, self.label_drop, self.num_classes, generator)
        bits = self.nll(z0, classes).mean() / (math.log(2) * self.length)
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
        classes: torch.Tensor | None = None,
        guidance: Guidance | None = None,
    ) -> torch.Tensor:
        """Raster-order sampling, one network call per token (``steps`` must be L if given).

        A conditional prior samples given ``classes`` (n,), or unconditionally without;
        with ``guidance`` > 0 the conditional and unconditional streams run as one doubled
        batch through every call, so the key/value cache holds both (2 rows per sample
        per token); the linear schedule's decoded fraction at token i is i / L.
        """
        if steps is not None and steps != self.length:
            raise ValueError(
                f"an autoregressive prior takes exactly {self.length} steps (one per token), "
                f"got {steps}"
            )
        z = torch.full((n, self.length), self.start_id, dtype=torch.long, device=device)
        cache: list | None = [] if use_cache else None
        step_input = torch.full((n, 1), self.start_id, dtype=torch.long, device=device)
        guidance = guidance or Guidance()
        if self.num_classes and classes is None:
            classes = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        if classes is not None:
            classes = classes.to(device)
            # Once guided, the unconditional stream runs at every token, even where w_t = 0:
            # its cache must hold every position.
            both = guidance.scale > 0 and bool((classes < self.num_classes).any())
        for i in range(self.length):
            if use_cache:
                inputs, kwargs = step_input, {"cache": cache, "offset": i}
            else:
                inputs, kwargs = self._shifted(z)[:, : i + 1], {}
            if classes is None:
                logits = self.denoiser(inputs, **kwargs)[:, -1]
            else:
                weight = guidance.weight(torch.full((n,), i / self.length, device=device))
                logits = guided_logits(self.denoiser, inputs, classes, weight, both, **kwargs)
                logits = logits[:, -1]
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
