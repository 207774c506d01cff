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


class ClassGaussianMixtures(nn.Module):
    """One Gaussian mixture per class, fitted to that class's latents (``condition: class``).

    ``sample`` draws each row from the mixture of the class asked for; ``log_prob`` is the
    unconditional density Σ_c π_c p(z | c), π the classes' training frequencies.
    """

    def __init__(self, dim: int, components: int, num_classes: int):
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.register_buffer("class_weights", torch.full((num_classes,), 1.0 / num_classes))
        self.mixtures = nn.ModuleList(
            GaussianMixturePrior(dim, components) for _ in range(num_classes)
        )

    @classmethod
    def fit(
        cls,
        latents: np.ndarray,
        labels: np.ndarray,
        components: int,
        covariance_type: str = "full",
        seed: int = 0,
        max_iter: int = 200,
    ) -> ClassGaussianMixtures:
        num_classes = int(labels.max()) + 1
        prior = cls(latents.shape[1], components, num_classes)
        counts = np.bincount(labels, minlength=num_classes)
        for c in range(num_classes):
            if counts[c] < components:
                raise ValueError(
                    f"class {c} has {counts[c]} training latents, fewer than the "
                    f"{components} mixture components fitted to each class"
                )
            prior.mixtures[c] = GaussianMixturePrior.fit(
                latents[labels == c], components, covariance_type, seed, max_iter
            )
        prior.class_weights.copy_(torch.from_numpy(counts / counts.sum()))
        return prior

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log Σ_c π_c p(z | c) in nats per row."""
        per = torch.stack([m.log_prob(z).double() for m in self.mixtures], 1)
        return (per + self.class_weights.double().log()).logsumexp(1).to(z.dtype)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Row i from the mixture of ``classes[i]`` (default: classes drawn by frequency)."""
        if classes is None:
            classes = torch.multinomial(
                self.class_weights, n, replacement=True, generator=generator
            )
        out = torch.empty(n, self.dim, device=self.class_weights.device)
        for c in classes.unique().tolist():
            rows = classes == c
            out[rows] = self.mixtures[c].sample(int(rows.sum()), temperature, generator)
        return out


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


def build_gmm(
    spec: dict, latent_dim: int, num_classes: int = 0
) -> GaussianMixturePrior | ClassGaussianMixtures:
    """The (untrained) mixture of a ``gmm`` prior entry, one per class when ``num_classes``
    > 0 (``condition: class``); EM fits it (train/continuous_prior.py)."""
    if num_classes:
        return ClassGaussianMixtures(latent_dim, spec["components"], num_classes)
    return GaussianMixturePrior(latent_dim, spec["components"])
