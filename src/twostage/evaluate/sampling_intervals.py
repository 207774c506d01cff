"""Intervals a single run gives its own scores: how much its FD, precision, density and
coverage move with the draw of its generated samples alone (one trained model, one seed,
the same real reference). Replicates over seeds (report/replicates.py) measure more;
this is what one run can say about itself. Each interval is centred on the run's score
and is meant to hold the mean score over fresh draws of as many samples from the model.

FD: random half-splits. A bootstrap resample repeats points, and in high dimension the
repeats bias every resampled FD upward and widen their spread. Instead the generated
set is cut into two random disjoint halves A and B: two independent draws of n/2
samples with the same bias, so (FD_A - FD_B)² / 2 estimates the variance of an FD at
n/2. The part of that variance that falls like 1/n halves from n/2 to n, so the
variance at n is taken as the mean of (FD_A - FD_B)² / 4 over ``SPLITS`` random splits,
and the half-width as 1.96 times its root. The part that falls like 1/n² (large only
when the model is as close to the data as a second real sample) is counted up to
twice: it widens the interval, never narrows it.

Precision and density average one value per generated point (real radii fixed), so a
bootstrap over the generated points is the usual percentile interval of a mean: the
2.5–97.5 % range of ``RESAMPLES`` resampled values, its half-width reported. Coverage
asks, per real point, whether any generated point falls inside its radius; it is
bootstrapped the same way. Recall is left out: it tests real points against the
generated points' own nearest-neighbour radii, which a resample's repeated points
shrink to zero.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from threadpoolctl import threadpool_limits

from twostage.evaluate.frechet import feature_statistics

RESAMPLES = 200  # bootstrap resamples for precision, density, coverage
SPLITS = 50  # random half-splits for FD: 100 FDs of n/2 points
LEVEL = 0.95
Z = NormalDist().inv_cdf((1 + LEVEL) / 2)  # a 95 % interval from a standard error: 1.96


def half_width(values: np.ndarray, level: float = LEVEL) -> float:
    """Half the width of the central ``level`` percentile interval of ``values``."""
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(hi - lo) / 2


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


class FrechetToFixed:
    """Fréchet distance of many feature sets to one fixed reference, fast.

    Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of
    S2^(1/2) S1 S2^(1/2) (similar to S1 S2, and symmetric positive semi-definite), so
    with the reference's root computed once each distance costs one symmetric
    eigendecomposition instead of a general matrix square root.
    """

    def __init__(self, real: np.ndarray):
        self.mu, sigma = feature_statistics(real)
        self.trace = float(np.trace(sigma))
        w, v = np.linalg.eigh(sigma)
        self.root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T

    def __call__(self, fake: np.ndarray) -> float:
        mu, sigma = feature_statistics(fake)
        eig = np.linalg.eigvalsh(self.root @ sigma @ self.root)
        diff = mu - self.mu
        trace_root = np.sqrt(np.clip(eig, 0.0, None)).sum()
        return float(diff @ diff + np.trace(sigma) + self.trace - 2.0 * trace_root)


def fd_half_width(fake: np.ndarray, real: np.ndarray, seed: int, splits: int = SPLITS) -> float:
    """95 % half-width of the Fréchet distance of ``fake`` to ``real`` (fixed), from the
    spread between random disjoint halves of ``fake`` (see the module docstring)."""
    fake = np.asarray(fake, dtype=np.float64)
    fd = FrechetToFixed(real)
    n = len(fake)
    half = n // 2
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(splits):
        order = rng.permutation(n)
        gaps.append(fd(fake[order[:half]]) - fd(fake[order[half : 2 * half]]))
    # Var(FD_A - FD_B) = 2 Var(FD at n/2) = 4 Var(FD at n) for the 1/n part of the variance
    return float(Z * np.sqrt(np.mean(np.square(gaps)) / 4))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def prdc_decisions(
    real: np.ndarray, fake: np.ndarray, nearest_k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per generated point: inside some real ball (precision), how many balls / k
    (density); and the real × generated matrix of "inside that real point's ball"."""
    real, fake = (np.asarray(x, dtype=np.float64) for x in (real, fake))
    # k-th neighbour within the real set, the zero self-distance counted as the reference does
    radii = np.partition(_distances(real, real), nearest_k, axis=1)[:, nearest_k]
    inside = _distances(real, fake) < radii[:, None]
    return inside.any(axis=0).astype(np.float64), inside.sum(axis=0) / nearest_k, inside


def prdc_half_widths(
    real: np.ndarray, fake: np.ndarray, nearest_k: int, seed: int, resamples: int = RESAMPLES
) -> dict[str, float]:
    """Bootstrap 95 % half-widths of precision, density and coverage (real radii fixed).

    Precision and density average a value per generated point; coverage asks, per real
    point, whether any resampled generated point falls inside its radius.
    """
    hit, count, inside = prdc_decisions(real, fake, nearest_k)
    out: dict[str, list[float]] = {"precision": [], "density": [], "coverage": []}
    for idx in _resamples(len(hit), resamples, seed):
        out["precision"].append(hit[idx].mean())
        out["density"].append(count[idx].mean())
        out["coverage"].append(inside[:, idx].any(axis=1).mean())
    return {k: half_width(np.array(v)) for k, v in out.items()}


def intervals(
    fake: np.ndarray,
    real_fd: np.ndarray,
    real_prdc: np.ndarray,
    fd_key: str,
    nearest_k: int,
    seed: int,
) -> dict:
    """The ``sampling_intervals`` block of a run's metrics: ``<metric>_ci95`` half-widths
    and how each was measured.

    One BLAS thread: the matrices are small, and more threads beside the other jobs of a
    run only contend for the same cores.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        block = {f"{fd_key}_ci95": fd_half_width(fake, real_fd, seed)}
        prdc = prdc_half_widths(real_prdc, fake, nearest_k, seed)
    block.update({f"{k}_ci95": v for k, v in prdc.items()})
    block["splits"] = SPLITS
    block["resamples"] = RESAMPLES
    halves = (
        f"{Z:.2f} x the standard error from {SPLITS} random half-splits of the generated samples"
    )
    boot = f"2.5-97.5 % percentiles over {RESAMPLES} resamples of the generated samples"
    block["method"] = {fd_key: halves, **{k: boot for k in prdc}}
    return block
