"""The VQ-GAN's adversarial part (eq. 4.12; docs/methods.md, "Stage 1"): a PatchGAN
discriminator, the hinge loss and the adaptive generator weight λ."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """taming's NLayerDiscriminator: one real/fake logit per overlapping image patch.

    ``n_layers`` stride-2 convolutions (channels ndf·2^i, capped at 8·ndf), one
    stride-1 convolution, then a 1-channel output map.
    """

    def __init__(self, channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _init_weights(m: nn.Module) -> None:
    # The DCGAN initialisation the reference uses.
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_weight(
    rec_loss: torch.Tensor,
    g_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float,
    delta: float = 1e-4,
    average: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """λ = min(‖∇_L rec‖ / (‖∇_L g‖ + δ), λ_max) at the decoder's last layer L, detached.

    Balances the two gradients where they meet, so the adversarial term neither
    drowns the reconstruction nor vanishes; the clamp keeps λ bounded when the
    adversarial gradient is tiny. In data-parallel training ``average`` (the mean
    over ranks) turns each rank's gradients into the global batch's before the
    norms, so every rank gets the single-process λ.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    if average is not None:
        rec_grad, g_grad = average(rec_grad), average(g_grad)
    weight = rec_grad.norm() / (g_grad.norm() + delta)
    return weight.clamp(0.0, max_weight).detach()
