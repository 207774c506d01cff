"""The evaluation protocol: one function scores a set of images against the real data.

Runs and calibration rows both go through :func:`score`, so their numbers are
computed identically (same extractor, same real reference, same k).
"""

from __future__ import annotations

import numpy as np

from twostage.evaluate.frechet import frechet_distance_from_features
from twostage.evaluate.prdc import compute_prdc


def real_subset(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A fixed random subset of the real features, so PRDC compares equal-sized sets."""
    if n >= len(real):
        return real
    idx = np.random.default_rng(seed).choice(len(real), size=n, replace=False)
    return real[np.sort(idx)]


def score(
    fake: np.ndarray, real_train: np.ndarray, extractor: str, nearest_k: int, seed: int
) -> dict:
    """FD against all training features; PRDC against an equal-sized training subset."""
    real = real_subset(real_train, len(fake), seed)
    prdc = compute_prdc(real, fake, nearest_k=nearest_k)
    return {
        f"fd_{extractor}": frechet_distance_from_features(fake, real_train),
        **prdc,
        "protocol": {
            "extractor": extractor,
            "n_fake": len(fake),
            "n_real_fd": len(real_train),
            "n_real_prdc": len(real),
            "nearest_k": nearest_k,
            "reference": "train",
        },
    }
