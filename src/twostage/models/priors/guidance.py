"""Class conditioning of the token priors (docs/methods.md, "Conditional priors").

Training replaces each label by the "no class" index with probability ``label_drop``,
so one network learns p(z | c) and p(z). Sampling with classifier-free guidance
combines the two at every network call:

    logits = (1 + w_t) · logits(z | c) − w_t · logits(z | no class)

w_t = w (``constant``) or w · (decoded fraction of the row's tokens) (``linear``, the
ramp of Muse and MAR: little guidance while the grid is mostly unknown). w_t = 0 is
the conditional model itself. Both streams go through the network as one doubled
batch, so a guided call evaluates 2 rows per sample (network_evaluations.py counts
them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCHEDULES = ("constant", "linear")


def drop_labels(
    classes: torch.Tensor, rate: float, null_class: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Each label replaced by ``null_class`` with probability ``rate`` (one uniform per row)."""
    u = torch.rand(classes.shape, generator=generator, device=classes.device)
    return torch.where(u < rate, torch.full_like(classes, null_class), classes)


@dataclass(frozen=True)
class Guidance:
    """Guidance scale w and its schedule over the decoded fraction of the grid."""

    scale: float = 0.0
    schedule: str = "constant"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"guidance schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.scale < 0:
            raise ValueError(f"guidance scale must be ≥ 0, got {self.scale}")

    def weight(self, decoded: torch.Tensor) -> torch.Tensor:
        """w_t per row, given each row's decoded fraction (0 = all unknown, 1 = all known)."""
        if self.schedule == "linear":
            return self.scale * decoded
        return torch.full_like(decoded, self.scale)


def combine(cond: torch.Tensor, uncond: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(1 + w)·cond − w·uncond, with w one value per row (B) of B × ... × K logits."""
    w = weight.view(-1, *[1] * (cond.dim() - 1)).to(cond.dtype)
    return (1 + w) * cond - w * uncond


def guided_logits(
    network: torch.nn.Module,
    tokens: torch.Tensor,
    classes: torch.Tensor,
    weight: torch.Tensor,
    both: bool,
    **kwargs,
) -> torch.Tensor:
    """The network's logits for ``tokens`` given ``classes``, guided by ``weight`` per row.

    ``both``: evaluate the unconditional stream too (one doubled batch: conditional rows
    first); without it only the conditional logits are computed (w = 0 everywhere).
    ``kwargs`` go to the network (a key/value cache then holds both streams).
    """
    if not both:
        return network(tokens, classes=classes, **kwargs)
    null = torch.full_like(classes, network.num_classes)
    logits = network(torch.cat([tokens, tokens]), classes=torch.cat([classes, null]), **kwargs)
    cond, uncond = logits.float().chunk(2)
    return combine(cond, uncond, weight)
