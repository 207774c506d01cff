"""Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    FD = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

computed in float64 with ``scipy.linalg.sqrtm``, as the reference FID implementations do.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_features"]

# Diagonal offset added to both covariances when S1 S2 is singular (the usual FID fix).
_SQRTM_EPS = 1e-6
# Relative residual ||R R - A|| / ||A|| above which a root scipy warned about is rejected;
# accurate roots, even of rank-deficient products, are at ~1e-14.
_SQRTM_RESIDUAL_RTOL = 1e-6
# Imaginary parts of sqrtm's diagonal up to this size are numerical noise.
_IMAG_ATOL = 1e-3


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of the rows of ``features``, in float64."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D (samples × features), got shape {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {feats.shape[0]}")
    mu = feats.mean(axis=0)
    # atleast_2d: np.cov returns a 0-d array for a single feature.
    sigma = np.atleast_2d(np.cov(feats, rowvar=False))
    return mu, sigma


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"covariances must both be {mu1.size}×{mu1.size}, got {sigma1.shape} and {sigma2.shape}"
        )

    diff = mu1 - mu2
    covmean = _sqrtm_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Real square root of S1 S2, regularised if the product is singular."""
    product = sigma1 @ sigma2
    covmean, flagged = _sqrtm(product)
    if not _is_reliable(covmean, product, flagged):
        # Nudging both covariances off singularity is the standard FID remedy.
        offset = np.eye(sigma1.shape[0]) * _SQRTM_EPS
        covmean, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("sqrtm of the covariance product is not finite, even after offset")

    if np.iscomplexobj(covmean):
        # S1 S2 is similar to a PSD matrix, so its root is real up to rounding; a large
        # imaginary part means the covariances are not valid.
        max_imag = np.max(np.abs(np.diagonal(covmean).imag))
        if max_imag > _IMAG_ATOL:
            raise ValueError(f"sqrtm has a large imaginary component ({max_imag:.3g})")
        covmean = covmean.real
    return covmean


def _sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy's sqrtm, also reporting whether scipy flagged the matrix singular/ill-conditioned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = linalg.sqrtm(matrix)
    flagged = False
    for w in caught:
        if issubclass(w.category, linalg.LinAlgWarning):
            flagged = True  # handled by the caller
        else:  # not ours to swallow
            warnings.warn(w.message, w.category, stacklevel=3)
    return np.asarray(root), flagged


def _is_reliable(root: np.ndarray, matrix: np.ndarray, flagged: bool) -> bool:
    """Whether ``root`` can be used as the square root of ``matrix`` without regularising.

    Older scipy returned NaN/inf for singular input; scipy >= 1.16 only warns and may
    return a finite but wrong root. Rank-deficient covariances (fewer samples than
    dimensions) are usually still rooted accurately, so when scipy warns we check the
    residual instead of always perturbing the answer.
    """
    if not np.isfinite(root).all():
        return False
    if not flagged:
        return True
    residual = np.linalg.norm(root @ root - matrix)
    return bool(residual <= _SQRTM_RESIDUAL_RTOL * np.linalg.norm(matrix))
