"""Gaussian mixture prior over continuous latents (the RAE's ex-post density; docs/methods.md).

scikit-learn fits it (EM); what is kept are plain arrays (weights, means and
full covariance Cholesky factors) as buffers of a torch module, so the
checkpoint loads with ``weights_only`` and sampling/likelihood need no sklearn.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.mixture import GaussianMixture


class GaussianMixturePrior(nn.Module):
    def __init__(self, dim: int, components: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_tril", torch.eye(dim).repeat(components, 1, 1))

    @classmethod
    def fit(
        cls,
        latents: np.ndarray,
        components: int,
        covariance_type: str = "full",
        seed: int = 0,
        max_iter: int = 200,
    ) -> GaussianMixturePrior:
        gm = GaussianMixture(
            components, covariance_type=covariance_type, random_state=seed, max_iter=max_iter
        )
        gm.fit(latents.astype(np.float64))
        prior = cls(latents.shape[1], components)
        prior.weights.copy_(torch.from_numpy(gm.weights_))
        prior.means.copy_(torch.from_numpy(gm.means_))
        prior.scale_tril.copy_(torch.linalg.cholesky(torch.from_numpy(full_covariances(gm))))
        return prior

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats per row, computed in float64 (covariances can be near-singular)."""
        comps = torch.distributions.MultivariateNormal(
            self.means.double(), scale_tril=self.scale_tril.double()
        )
        per = comps.log_prob(z.double().unsqueeze(1)) + self.weights.double().log()
        return per.logsumexp(1).to(z.dtype)

    @torch.no_grad()
    def sample(
        self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Pick a component by weight, then mean + temperature · L ε."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, 1, generator=generator, device=self.means.device)
        return self.means[k] + temperature * (self.scale_tril[k] @ eps).squeeze(2)


def full_covariances(gm: GaussianMixture) -> np.ndarray:
    """K×D×D covariances whatever sklearn's ``covariance_type``."""
    k, d = gm.means_.shape
    cov = gm.covariances_
    if gm.covariance_type == "full":
        return cov
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])  # spherical


def build_gmm(spec: dict, latent_dim: int) -> GaussianMixturePrior:
    """The (untrained) mixture of a ``gmm`` prior entry; EM fits it (train/continuous_prior.py)."""
    return GaussianMixturePrior(latent_dim, spec["components"])
