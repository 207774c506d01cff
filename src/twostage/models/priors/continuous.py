"""Priors over continuous latent vectors, built by ``kind``.

flow: a coupling flow fitted to a frozen autoencoder's latents; glf: the same
flow trained jointly with its own autoencoder (GLF, eq. 3.7), whose checkpoint
carries that autoencoder too; vae_flow: the flow as the prior of a VAE, trained
jointly with it (eq. 3.4), its checkpoint carrying that VAE; gmm: a Gaussian
mixture; vae_prior: the VAE's N(0, I).
Every one offers ``log_prob(z)`` (nats per row) and ``sample(n, temperature, generator)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from twostage.models.priors.flow import CouplingFlow
from twostage.models.priors.gmm import ClassGaussianMixtures, GaussianMixturePrior


class StandardNormalPrior(nn.Module):
    """The VAE's own prior N(0, I)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("anchor", torch.zeros(0))  # only says which device to sample on

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        device = self.anchor.device
        return temperature * torch.randn(n, self.dim, generator=generator, device=device)


def build_continuous_prior(spec: dict, latent_dim: int, num_classes: int = 0) -> nn.Module:
    """The prior of ``spec``; a gmm with ``num_classes`` > 0 has one mixture per class."""
    kind = spec["kind"]
    if kind == "gmm" and num_classes:
        return ClassGaussianMixtures(latent_dim, spec["components"], num_classes)
    if kind in ("flow", "glf", "vae_flow"):
        return CouplingFlow(latent_dim, spec["blocks"], spec["hidden"], spec["layers"])
    if kind == "gmm":
        return GaussianMixturePrior(latent_dim, spec["components"])
    if kind == "vae_prior":
        return StandardNormalPrior(latent_dim)
    raise ValueError(f"unknown continuous prior kind {kind!r}")
