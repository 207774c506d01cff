"""Fréchet distance: zero on itself, the closed form for diagonal Gaussians, symmetry, and
torch-fidelity's FID formula on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twostage.evaluate.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)


def diagonal_closed_form(mu1, var1, mu2, var2) -> float:
    # For commuting (here diagonal) covariances sqrt(S1 S2) = diag(sqrt(v1 v2)), so
    # FD = ||mu1 - mu2||² + Σ (sqrt(v1) - sqrt(v2))².
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def test_feature_statistics_float64():
    feats = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    mu, sigma = feature_statistics(feats)
    assert mu.dtype == sigma.dtype == np.float64
    assert mu.shape == (8,) and sigma.shape == (8, 8)
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False))


def test_single_feature_statistics_are_matrices():
    mu, sigma = feature_statistics(np.arange(10.0)[:, None])
    assert mu.shape == (1,) and sigma.shape == (1, 1)


def test_set_against_itself_is_zero():
    feats = np.random.default_rng(1).standard_normal((2000, 32))
    assert abs(frechet_distance_from_features(feats, feats)) < 1e-6


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    var1, var2 = rng.uniform(0.2, 3.0, 16), rng.uniform(0.2, 3.0, 16)
    expected = diagonal_closed_form(mu1, var1, mu2, var2)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_diagonal_gaussians_from_samples():
    # Samples drawn from the two Gaussians: the estimate converges to the closed form.
    rng = np.random.default_rng(3)
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, -0.5, 2.0])
    var1, var2 = np.array([1.0, 4.0, 0.25, 1.0]), np.array([1.0, 1.0, 1.0, 9.0])
    a = mu1 + np.sqrt(var1) * rng.standard_normal((200_000, 4))
    b = mu2 + np.sqrt(var2) * rng.standard_normal((200_000, 4))
    expected = diagonal_closed_form(mu1, var1, mu2, var2)  # = 5.25 + 1.25 + 4 = 10.5
    assert expected == pytest.approx(10.5)
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=0.01)


def test_symmetric():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((800, 24))
    b = 0.5 * rng.standard_normal((600, 24)) @ rng.standard_normal((24, 24)) + 1.0
    ab = frechet_distance_from_features(a, b)
    assert ab > 0
    assert ab == pytest.approx(frechet_distance_from_features(b, a), rel=1e-9)


def test_rank_deficient_covariances():
    # Fewer samples than dimensions: singular covariances, still a finite distance.
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((20, 64)), rng.standard_normal((20, 64)) + 0.1
    fd = frechet_distance_from_features(a, b)
    assert np.isfinite(fd) and fd > 0
    # A singular product whose root scipy gets right is used as is (no eps offset):
    # FD(N(0, diag(1, 0)), N(0, diag(4, 0))) = (1 - 2)² = 1.
    fd = frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([4.0, 0.0]))
    assert fd == pytest.approx(1.0, abs=1e-12)


def test_unrootable_product_falls_back_to_eps_offset():
    # [[0, 1], [0, 0]] has no square root; with eps·I added to both matrices the root's
    # trace is 2·sqrt(eps·(1 + eps)), so FD = 2 + 0 - 4·sqrt(eps·(1 + eps)).
    eps = 1e-6
    fd = frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[0.0, 1.0], [0.0, 0.0]]))
    assert fd == pytest.approx(2 - 4 * np.sqrt(eps * (1 + eps)), rel=1e-9)


def test_large_imaginary_component_raises():
    # A "covariance" with a negative eigenvalue has no real square root.
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="mean vectors"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(np.zeros(5))


def _cnn_like_features(rng, n: int, mix: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Correlated, non-negative, partly zero features, like a ReLU penultimate layer."""
    return np.maximum(scale * rng.standard_normal((n, mix.shape[0])) @ mix + shift, 0.0)


def test_equals_torch_fidelity_fid_on_the_same_features():
    # fd_classifier (scipy sqrtm of S1 S2) against torch-fidelity's FID (sum of the square
    # roots of the eigenvalues of S1 S2), both from float64 features: the two roots agree
    # to ~1e-14 relative, so 1e-9 leaves room for other BLAS/LAPACK builds and still
    # catches any change of formula (an n instead of n − 1 covariance moves FD by ~3e-4).
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from twostage.evaluate.protocol import fid_torch_fidelity

    rng = np.random.default_rng(6)
    mix = rng.standard_normal((256, 256)) / 16
    real = _cnn_like_features(rng, 3000, mix, 1.0, 0.2)
    fake = _cnn_like_features(rng, 2500, mix, 1.2, 0.1)
    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (fake, real)]
    theirs = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    ours = frechet_distance_from_features(fake, real)
    assert theirs > 1.0  # far from 0, where a relative tolerance would mean nothing
    assert ours == pytest.approx(theirs, rel=1e-9)
    # The Inception branch of the protocol (torch-fidelity on float32 features, as its own
    # pipeline stores them) gives the same number up to float32 rounding of the features.
    assert fid_torch_fidelity(fake, real) == pytest.approx(ours, rel=1e-6)
