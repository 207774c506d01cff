"""Differentiable augmentation (Zhao et al. 2020) for every discriminator input.

Each transform is a differentiable function of the image with random
parameters drawn per image, so the generator still gets gradients through the
augmented fakes. Images are in [-1, 1], B×C×H×W; the constants are the paper's.
In data-parallel training the parameters are drawn for the global batch and
each rank keeps its images' (a single process's augmentations, image for image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twostage.models.data_parallel import rows_of_global_draw

POLICIES = ("brightness", "saturation", "contrast", "translation")


def _per_image(x: torch.Tensor) -> torch.Tensor:
    return rows_of_global_draw(
        lambda n: torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device), x.size(0)
    )


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_per_image(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)  # grey level; a no-op on one channel
    return (x - mean) * (_per_image(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_per_image(x) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = rows_of_global_draw(lambda n: torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device), b)
    dx = rows_of_global_draw(lambda n: torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device), b)
    gb, gy, gx = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    # Index a zero-padded copy: positions shifted off the image read the zero border.
    gy = (gy + dy + 1).clamp(0, h + 1)
    gx = (gx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[gb, gy, gx].permute(0, 3, 1, 2)


_TRANSFORMS = {
    "brightness": brightness,
    "saturation": saturation,
    "contrast": contrast,
    "translation": translation,
}


def diff_augment(x: torch.Tensor, policy: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Apply the named transforms in order (an empty policy returns ``x``)."""
    for name in policy:
        x = _TRANSFORMS[name](x)
    return x
