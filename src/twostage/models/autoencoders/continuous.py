"""Continuous-latent autoencoders (docs/methods.md): deterministic AE, RAE and VAE.

The networks follow the InfoGAN-style MNIST architecture the GLF paper uses:
strided 4×4 convolutions then a fully-connected layer down to a latent vector,
and the mirror image up. ``channels`` and ``fc_dim`` size them (the paper:
64, 128 and 1024; the CPU defaults are smaller).

The decoder's raw output ``a`` becomes the image ``tanh(a)`` in [-1, 1]. For the
VAE the same ``a`` gives Bernoulli logits ``2a`` over pixel intensities in
[0, 1], because sigmoid(2a) = (tanh(a) + 1) / 2: one decoder, two readings.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from twostage.models.data_parallel import rows_of_global_draw


class ContinuousAutoencoder(nn.Module):
    def __init__(self, spec: dict, channels: int, resolution: int):
        super().__init__()
        self.kind = spec["kind"]
        self.latent_dim = spec["latent_dim"]
        widths = spec["channels"]
        self.side = resolution // 2 ** len(widths)  # feature-map side after the convolutions
        flat = widths[-1] * self.side * self.side

        enc: list[nn.Module] = []
        c_in = channels
        for i, w in enumerate(widths):
            enc.append(nn.Conv2d(c_in, w, 4, stride=2, padding=1))
            if i > 0:  # InfoGAN: no batch norm after the first convolution
                enc.append(nn.BatchNorm2d(w))
            enc.append(nn.LeakyReLU(0.1))
            c_in = w
        out_dim = 2 * self.latent_dim if self.kind == "vae" else self.latent_dim
        enc += [
            nn.Flatten(),
            nn.Linear(flat, spec["fc_dim"]),
            nn.BatchNorm1d(spec["fc_dim"]),
            nn.LeakyReLU(0.1),
            nn.Linear(spec["fc_dim"], out_dim),
        ]
        self.encoder = nn.Sequential(*enc)

        # No batch norm right after the latent: it would make the decoder blind to
        # the latents' scale, and the RAE's ||z||² penalty would then shrink z freely.
        dec: list[nn.Module] = [
            nn.Linear(self.latent_dim, spec["fc_dim"]),
            nn.ReLU(),
            nn.Linear(spec["fc_dim"], flat),
            nn.BatchNorm1d(flat),
            nn.ReLU(),
            nn.Unflatten(1, (widths[-1], self.side, self.side)),
        ]
        rev = list(reversed(widths))
        for w_in, w_out in zip(rev, rev[1:], strict=False):
            dec += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1)]
            dec += [nn.BatchNorm2d(w_out), nn.ReLU()]
        dec.append(nn.ConvTranspose2d(rev[-1], channels, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*dec)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance) of q(z|x) for the VAE; (z, None) for deterministic kinds."""
        h = self.encoder(x)
        if self.kind == "vae":
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar.clamp(-30, 20)
        return h, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent a prior is fitted to: z, or the posterior mean for the VAE."""
        return self.posterior(x)[0]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents B×D → images B×C×H×W in [-1, 1]."""
        return torch.tanh(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def squared_error(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image sum of squared errors on the [-1, 1] scale (the RAE/GLF L_rec), batch mean."""
    return (recon - x).pow(2).flatten(1).sum(1).mean()


def vae_terms(
    model: ContinuousAutoencoder,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    sharded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image Bernoulli reconstruction NLL and KL(q(z|x) || N(0, I)), in nats (batch means).

    The ELBO is −(nll + kl); a draw by the reparameterisation z = μ + σ·ε. With
    ``sharded`` (training: ``x`` is this rank's slice of a data-parallel batch) ε is
    drawn for the global batch and this rank's rows kept.
    """
    mu, logvar = model.posterior(x)
    if sharded:
        shape = mu.shape[1:]
        eps = rows_of_global_draw(
            lambda n: torch.randn((n, *shape), generator=generator, device=mu.device), len(mu)
        )
    else:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + (0.5 * logvar).exp() * eps
    logits = 2 * model.decode_raw(z)
    target = (x + 1) / 2
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return nll.mean(), kl.mean()


def decoder_l2(model: ContinuousAutoencoder) -> torch.Tensor:
    """||θ_D||²: the RAE-L2 decoder regulariser."""
    return sum(p.pow(2).sum() for p in model.decoder.parameters())
