"""Absorbing (masked) discrete diffusion over token grids (docs/methods.md).

Forward process: at time t ∈ {1..T} tokens are replaced by the mask token
m = K: each independently with probability t/T (``random`` schedule, the
paper's) or exactly round(t·L/T) of them (``fixed``). The denoiser predicts
p(z_0 | z_t) at every position; only masked positions carry loss.

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

from twostage.models.priors.guidance import Guidance, drop_labels, guided_logits
from twostage.models.priors.transformer import Transformer

SAMPLERS = ("random", "even", "cosine", "confidence")
# Samplers whose reveal mask does not depend on the network (so it can be drawn first).
RANDOM_ORDER = ("random", "even", "cosine")


def cosine_still_masked(initial_masked: torch.Tensor, step: int, steps: int) -> torch.Tensor:
    """MaskGIT's schedule: after step ``step`` of ``steps``, ⌊m₀·cos(π/2 · step/steps)⌋ of a
    row's m₀ initially masked tokens are still masked (none after the last step)."""
    if step == steps:  # cos(π/2) is 6e-17 in floating point, not 0
        return torch.zeros_like(initial_masked)
    return torch.floor(initial_masked * math.cos(math.pi / 2 * step / steps)).long()


class AbsorbingDiffusion(nn.Module):
    def __init__(self, spec: dict, codebook_size: int, length: int, num_classes: int = 0):
        super().__init__()
        self.codebook_size = codebook_size
        self.mask_id = codebook_size  # the absorbing state is one extra input token
        self.length = length
        self.num_timesteps = length  # T = L, as in the paper
        self.loss_type = spec["loss_type"]
        self.mask_schedule = spec["mask_schedule"]
        # Class-conditional (num_classes > 0): labels dropped to "no class" at this rate.
        self.num_classes = num_classes
        self.label_drop = spec["label_drop"] if num_classes else 0.0
        self.denoiser = Transformer.for_tokens(spec, codebook_size, length, num_classes=num_classes)

    # ----------------------------------------------------------------- training
    def q_sample(
        self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask tokens of z0 at time t (per sequence); return (z_t, mask)."""
        u = torch.rand(z0.shape, generator=generator, device=z0.device)
        if self.mask_schedule == "fixed":
            # Exactly round(t·L/T) masked: the positions with the smallest u.
            count = torch.round(t.float() * self.length / self.num_timesteps).long()
            rank = u.argsort(dim=1).argsort(dim=1)
            mask = rank < count[:, None]
        else:
            mask = u < (t.float() / self.num_timesteps)[:, None]
        return torch.where(mask, torch.full_like(z0, self.mask_id), z0), mask

    def masked_nll(
        self, z0: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor, classes=None
    ) -> torch.Tensor:
        """Σ over masked positions of −log p_θ([z_0]_i | z_t), per sequence (nats)."""
        logits = self.denoiser(zt) if classes is None else self.denoiser(zt, classes=classes)
        nll = F.cross_entropy(logits.transpose(1, 2), z0, reduction="none")
        return (nll * mask).sum(1)

    def sample_time(self, batch: int, device, generator: torch.Generator | None = None):
        return torch.randint(
            1, self.num_timesteps + 1, (batch,), device=device, generator=generator
        )

    def loss(
        self,
        z0: torch.Tensor,
        generator: torch.Generator | None = None,
        classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, ELBO estimate) for a batch, both in bits per token.

        A conditional prior takes the batch's ``classes``; in training mode each is
        dropped to "no class" with probability ``label_drop`` (guidance.py).
        """
        t = self.sample_time(z0.shape[0], z0.device, generator)
        zt, mask = self.q_sample(z0, t, generator)
        if classes is not None and self.training:
            classes = drop_labels(classes, self.label_drop, self.num_classes, generator)
        nll = self.masked_nll(z0, zt, mask, classes)
        to_bits = 1.0 / (math.log(2) * self.length)
        elbo = self.num_timesteps * nll / t  # T·(1/t)·Σ: one-sample estimate of the sum over t
        if self.loss_type == "elbo":
            train = elbo
        elif self.loss_type == "mlm":  # plain masked-LM: mean over the masked tokens
            train = nll / mask.sum(1).clamp(min=1) * self.length
        else:  # eq. 4.5: weight (T − t + 1)/T in place of 1/t; lower variance, same optimum
            train = (self.num_timesteps - t + 1).float() / self.num_timesteps * nll
        return train.mean() * to_bits, elbo.mean().detach() * to_bits

    # ----------------------------------------------------------------- sampling
    def logits(
        self, z: torch.Tensor, classes: torch.Tensor | None = None, guidance: Guidance | None = None
    ) -> torch.Tensor:
        """The denoiser's logits at every position: B × L × K.

        A conditional prior given no ``classes`` is its unconditional half ("no class");
        given classes, ``guidance`` w_t follows each row's decoded fraction (guidance.py).
        """
        if not self.num_classes:
            return self.denoiser(z)
        if classes is None:
            classes = torch.full((z.shape[0],), self.num_classes, device=z.device)
        weight = (guidance or Guidance()).weight((z != self.mask_id).float().mean(1))
        return guided_logits(self.denoiser, z, classes, weight, both=bool((weight > 0).any()))

    def probabilities(
        self,
        z: torch.Tensor,
        temperature: float,
        classes: torch.Tensor | None = None,
        guidance: Guidance | None = None,
    ) -> torch.Tensor:
        """softmax(logits / τ) at every position: B × L × K."""
        return F.softmax(self.logits(z, classes, guidance).float() / temperature, dim=-1)

    @staticmethod
    def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, n, k = probs.shape
        return torch.multinomial(probs.reshape(-1, k), 1, generator=generator).view(b, n)

    def _reveal(self, z, t, generator, sampler="random", steps=None, initial_masked=None):
        """Which still-masked tokens the reverse step reveals at t (of ``steps``).

        The paper's step (``random``) reveals each w.p. 1/t, so the count per step varies
        (16 tokens in 4 steps: Binomial(16, 1/4) first, sometimes 8 at once). ``even``
        reveals exactly ⌈m/t⌉ of a row's m masked tokens; ``cosine`` exactly as many as
        MaskGIT's cosine schedule says (few first, when the tokens revealed together are
        drawn from little context, more later; ``initial_masked`` is each row's m₀).
        Both pick a uniformly random subset (the smallest of the same uniforms). Drawn
        before the network is called: it does not depend on the probabilities, so rows
        that reveal nothing need no network call (``compact`` sampling).
        """
        u = torch.rand(z.shape, generator=generator, device=z.device)
        masked = z == self.mask_id
        if sampler == "random":
            return masked & (u < 1.0 / t)
        still_masked = masked.sum(1)
        if sampler == "even":
            count = (still_masked + t - 1) // t
        else:
            count = still_masked - cosine_still_masked(initial_masked, steps - t + 1, steps)
        rank = torch.where(masked, u, 2.0).argsort(1).argsort(1)
        return masked & (rank < count[:, None])

    @staticmethod
    def _draw_at(probs, reveal, generator):
        """Tokens for the ``reveal`` positions by inversion of the CDF (one uniform each).

        One uniform per grid position is drawn whether revealed or not, so the random
        stream does not depend on which rows were evaluated.
        """
        u = torch.rand(reveal.shape, generator=generator, device=reveal.device)
        if probs is None:  # compact sampling before any row needed the network
            return torch.empty(0, dtype=torch.long, device=reveal.device)
        cdf = probs[reveal].cumsum(-1)
        target = (u[reveal] * cdf[:, -1]).unsqueeze(-1)
        drawn = torch.searchsorted(cdf, target, right=True).squeeze(-1)
        return drawn.clamp_max(probs.shape[-1] - 1)

    def _random_step(
        self, z, probs, t, generator, sampler="random", steps=None, initial_masked=None
    ):
        """The paper's reverse step: each still-masked token is revealed with probability 1/t
        (``even``, ``cosine``: an exact count, see ``_reveal``)."""
        reveal = self._reveal(z, t, generator, sampler, steps, initial_masked)
        return self._reveal_tokens(z, reveal, self._draw_at(probs, reveal, generator))

    @staticmethod
    def _reveal_tokens(z, reveal, drawn):
        z = z.clone()
        z[reveal] = drawn
        return z

    def _confidence_step(self, z, probs, step, steps, initial_masked, generator, choice_temp):
        """MaskGIT-style step: reveal the most confident draws; a cosine count stays masked.

        Confidence is the log-probability of the drawn token plus Gumbel noise scaled by
        ``choice_temp`` · (1 − step/steps), as MaskGIT does: without the noise the
        order is greedy and samples collapse onto the easiest digits.
        """
        masked = z == self.mask_id
        draw = self._draw(probs, generator)
        confidence = probs.gather(-1, draw[..., None])[..., 0].clamp_min(1e-30).log()
        u = torch.rand(z.shape, generator=generator, device=z.device).clamp(1e-12, 1 - 1e-12)
        confidence = confidence + choice_temp * (1 - step / steps) * -torch.log(-torch.log(u))
        confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))
        keep_masked = cosine_still_masked(initial_masked, step, steps)
        # Rank positions by confidence; the keep_masked least confident stay masked.
        rank = confidence.argsort(dim=1).argsort(dim=1)
        stay = masked & (rank < keep_masked[:, None])
        return torch.where(masked & ~stay, draw, z)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        on_step: Callable[[int], None] | None = None,
        sampler: str = "random",
        init: torch.Tensor | None = None,
        choice_temperature: float = 4.5,
        compact: bool = True,
        classes: torch.Tensor | None = None,
        guidance: Guidance | None = None,
    ) -> torch.Tensor:
        """Reverse process in ``steps`` steps (S = T is the full chain).

        ``random`` (the paper): at t = S, …, 1 each still-masked token is revealed
        with probability 1/t, its value drawn from softmax(logits / τ); t = 1
        reveals the rest. ``even``: the same, but each step reveals exactly ⌈m/t⌉ of
        the m masked tokens (a random subset); ``cosine``: exactly the count of MaskGIT's
        cosine schedule (few first). ``confidence``: every step draws all
        masked tokens and keeps the least confident masked, their number following a
        cosine schedule to zero (``choice_temperature``: MaskGIT's noise on the ordering).
        ``init`` (B × L, mask token where unknown) starts from a partly known
        grid: unmasked tokens are never changed (inpainting).
        ``compact=False`` calls the network on the whole batch at every step (exactly
        ``steps`` calls); the default skips work whose result is already known and
        returns the identical tokens (see ``_sample_compact``).
        ``classes`` (n,) and ``guidance``: a conditional prior's classes and classifier-free
        guidance (guidance.py); without classes it samples unconditionally.
        """
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in 1..{self.num_timesteps}, got {steps}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if init is None:
            z = torch.full((n, self.length), self.mask_id, dtype=torch.long, device=device)
        else:
            z = init.to(device).clone()
        initial_masked = (z == self.mask_id).sum(1)
        if classes is not None:
            classes = classes.to(device)
        if compact:
            return self._sample_compact(
                z,
                steps,
                temperature,
                generator,
                on_step,
                sampler,
                initial_masked,
                choice_temperature,
                classes,
                guidance,
            )
        for i, t in enumerate(range(steps, 0, -1)):
            probs = self.probabilities(z, temperature, classes, guidance)
            if sampler in RANDOM_ORDER:
                z = self._random_step(z, probs, t, generator, sampler, steps, initial_masked)
            else:
                z = self._confidence_step(
                    z, probs, i + 1, steps, initial_masked, generator, choice_temperature
                )
            if on_step is not None:
                on_step(t)
        return z

    def _sample_compact(
        self,
        z,
        steps,
        temperature,
        generator,
        on_step,
        sampler,
        initial_masked,
        choice_temperature,
        classes=None,
        guidance=None,
    ):
        """``sample`` with the same random stream and result, but no repeated network work.

        The network's output for a row depends only on that row's grid, so (1) a row
        whose grid has not changed since its last evaluation reuses those
        probabilities: in the ``random``, ``even`` and ``cosine`` samplers which tokens
        are revealed at step t does not depend on the network, so the reveal mask is drawn
        first and only rows that reveal something and changed since are evaluated
        (with steps = tokens, about 1 − 1/e of the rows per step); (2) rows that are
        entirely masked (every row at the first step unless ``init``) share one
        evaluation of the all-masked grid (per class: guidance depends only on the row's
        grid and class).
        """
        b = z.shape[0]
        probs = None
        stale = torch.ones(b, dtype=torch.bool, device=z.device)  # grid changed since evaluated
        for i, t in enumerate(range(steps, 0, -1)):
            if sampler in RANDOM_ORDER:
                reveal = self._reveal(z, t, generator, sampler, steps, initial_masked)
                need = stale & reveal.any(1)
            else:
                need = stale
            if need.any():
                fresh = self._probabilities_of_rows(z, need, temperature, classes, guidance)
                if probs is None:
                    probs = fresh.new_empty((b, *fresh.shape[1:]))
                probs[need] = fresh
                stale &= ~need
            if sampler in RANDOM_ORDER:
                z = self._reveal_tokens(z, reveal, self._draw_at(probs, reveal, generator))
                stale |= reveal.any(1)
            else:
                new = self._confidence_step(
                    z, probs, i + 1, steps, initial_masked, generator, choice_temperature
                )
                stale |= (new != z).any(1)
                z = new
            if on_step is not None:
                on_step(t)
        return z

    def _probabilities_of_rows(self, z, rows, temperature, classes=None, guidance=None):
        """``probabilities`` of z[rows] in one call; all-masked rows share one evaluation
        (one per class among them, for a conditional prior)."""
        sub = z[rows]
        cls = None if classes is None else classes[rows]
        blank = (sub == self.mask_id).all(1)
        if blank.sum() <= 1:
            return self.probabilities(sub, temperature, cls, guidance)
        if cls is None:
            shared_cls, which = None, torch.zeros(int(blank.sum()), dtype=torch.long)
        else:
            shared_cls, which = torch.unique(cls[blank], return_inverse=True)
            shared_cls = torch.cat([cls[~blank], shared_cls])
        # The distinct rows, then all-masked rows: the last outputs serve every blank row.
        blanks = sub[blank][:1].expand(len(which.unique()), -1)
        probs = self.probabilities(
            torch.cat([sub[~blank], blanks]), temperature, shared_cls, guidance
        )
        out = probs.new_empty((sub.shape[0], *probs.shape[1:]))
        distinct = int((~blank).sum())
        out[~blank] = probs[:distinct]
        out[blank] = probs[distinct:][which.to(probs.device)]
        return out

    @torch.no_grad()
    def sample_large(
        self,
        n: int,
        side: int,
        rows: int,
        cols: int,
        steps: int,
        stride: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """A rows × cols token grid larger than the training grid (side × side), eq. 4.11.

        Every step applies the denoiser to side × side windows (``stride`` apart,
        the last one flush with the edge), averages each position's
        probabilities over the windows covering it, then takes the ordinary
        reverse step. Returns B × rows × cols.
        """
        if rows < side or cols < side:
            raise ValueError(f"grid {rows}×{cols} is smaller than the training grid {side}×{side}")
        tops, lefts = _window_starts(rows, side, stride), _window_starts(cols, side, stride)
        z = torch.full((n, rows, cols), self.mask_id, dtype=torch.long, device=device)
        for t in range(steps, 0, -1):
            total = torch.zeros(n, rows, cols, self.codebook_size, device=device)
            count = torch.zeros(rows, cols, 1, device=device)
            for top in tops:
                for left in lefts:
                    window = z[:, top : top + side, left : left + side].reshape(n, side * side)
                    p = self.probabilities(window, temperature).view(n, side, side, -1)
                    total[:, top : top + side, left : left + side] += p
                    count[top : top + side, left : left + side] += 1
            probs = (total / count).view(n, rows * cols, -1)
            z = self._random_step(z.view(n, -1), probs, t, generator).view(n, rows, cols)
        return z


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts
