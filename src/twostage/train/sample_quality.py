"""A validation signal for token priors that sees sample quality, not only likelihood.

Two absorbing priors whose validation bounds agree to 0.01 bits per token can give
samples whose Fréchet distances differ several-fold: the bound is dominated by how well
the network predicts tokens from large visible contexts, while samples are built from the
first few tokens drawn out of almost nothing. So at every evaluation the trainer can draw
a small sample, decode it with the prior's autoencoder and score it with the primary
extractor, exactly as the evaluation stage would (same features, same real reference),
only with fewer images. The stream of random numbers is the same at every evaluation, so
two checkpoints are compared on the same noise.
"""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.config import Params
from twostage.evaluate import cache, extractors
from twostage.evaluate.frechet import feature_statistics, frechet_distance
from twostage.images import to_uint8
from twostage.kinds import KINDS
from twostage.models.autoencoders import load_autoencoder

# Decoding and feature extraction in chunks of this many images bounds their memory.
CHUNK = 250


def sampling_options(prior: torch.nn.Module, spec: dict) -> dict:
    """``sample`` arguments: the kind's reverse process (``sample_fd_sampler``), else raster
    order, one token per step."""
    sampler = KINDS[spec["kind"]].sample_fd_sampler
    if sampler is not None:
        return {"steps": spec.get("sample_fd_steps", prior.num_timesteps), "sampler": sampler}
    return {"steps": prior.length}


class SampleFD:
    """FD of ``sample_fd_images`` decoded samples against the real training features."""

    def __init__(self, p: Params, prior_name: str, device: torch.device, seed: int):
        spec = p.prior(prior_name)
        ae_name = spec["autoencoder"]
        dataset = p.dataset_of_autoencoder(ae_name)
        self.spec, self.device, self.seed = spec, device, seed
        self.n = spec["sample_fd_images"]
        self.temperature = spec["sample_fd_temperature"]
        self.ae = load_autoencoder(
            paths.autoencoder(ae_name)["model"], device, p.autoencoder(ae_name)
        )
        self.extractor = extractors.build(p, p["evaluation"]["extractor"], dataset, device)
        self.real = feature_statistics(cache.load_train_features(p, dataset, self.extractor))

    @torch.no_grad()
    def images(self, prior: torch.nn.Module) -> np.ndarray:
        """The decoded sample of ``prior`` (its training mode is restored afterwards)."""
        was_training = prior.training
        prior.eval()
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        side = self.ae.token_side
        out = []
        for start in range(0, self.n, CHUNK):
            b = min(CHUNK, self.n - start)
            tokens = prior.sample(
                b,
                temperature=self.temperature,
                generator=gen,
                device=self.device,
                **sampling_options(prior, self.spec),
            )
            out.append(to_uint8(self.ae.decode(tokens.view(b, side, side)).float()))
        prior.train(was_training)
        return np.concatenate(out)

    def __call__(self, prior: torch.nn.Module) -> float:
        fake = feature_statistics(self.extractor(self.images(prior)))
        return float(frechet_distance(*fake, *self.real))
