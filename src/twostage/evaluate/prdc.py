"""Precision, recall, density and coverage (Naeem et al. 2020), exact and memory-bounded.

With real features X (N rows), fake features Y (M rows), Euclidean distance d and
NND_k(Z) the distance from Z to its k-th nearest neighbour within its own set:

    Precision = (1/M)  Σ_j 1[∃i: d(Y_j, X_i) < NND_k(X_i)]
    Recall    = (1/N)  Σ_i 1[∃j: d(X_i, Y_j) < NND_k(Y_j)]
    Density   = (1/kM) Σ_j Σ_i 1[d(Y_j, X_i) < NND_k(X_i)]
    Coverage  = (1/N)  Σ_i 1[min_j d(X_i, Y_j) < NND_k(X_i)]

This reproduces the reference ``prdc.compute_prdc`` (v0.2) decision for decision:
distances are formed as sklearn's ``euclidean_distances`` forms them
((-2 x·y + ||x||²) + ||y||² in float64, clamped at 0, then sqrt; rounded to float32
before the clamp when both inputs are float32), NND_k is the (k+1)-th smallest entry
of a row of the within-set distance matrix *including* the zero self-distance, and
every comparison is a strict ``<``. The final averages are taken with numpy exactly
as the reference takes them, so equal decisions give bit-identical numbers.

The one thing that cannot be reproduced bit for bit is the BLAS summation order of
x·y (even sklearn's own value for a pair depends on which block of its product the
pair falls in), so distances may differ from sklearn's in the last ulp. That can flip
a decision only at an exact tie between two distinct pairs, e.g. a fake sample that
is a bit-for-bit copy of a real one, where the reference's own answer is rounding
noise. Random continuous features have no such ties, and on exactly representable
features (e.g. small integers, which the tests use) the ties are exact in both.

Unlike the reference, which materialises three full distance matrices, everything is
computed by blocks of ``chunk_size`` rows, so peak extra memory is
O(chunk_size × max(N, M)) float64 (plus a float64 copy of the features) rather than
O(N × M).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["compute_prdc"]


def compute_prdc(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    nearest_k: int = 3,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features``."""
    real, fake = _validate(real_features, fake_features, nearest_k, chunk_size)
    device = torch.device(device)
    # sklearn keeps float32 distances only when *both* sides are float32; anything else
    # (float64, float16, ints) is computed and compared in float64.
    real_dtype = _distance_dtype(real, real)
    fake_dtype = _distance_dtype(fake, fake)
    cross_dtype = _distance_dtype(real, fake)

    x = _to_torch(real, device)
    y = _to_torch(fake, device)
    xx = _squared_norms(x)
    yy = _squared_norms(y)

    real_radii = _nearest_neighbour_radii(x, xx, nearest_k, chunk_size, real_dtype)
    fake_radii = _nearest_neighbour_radii(y, yy, nearest_k, chunk_size, fake_dtype)

    # One pass over the real×fake distances, a block of real rows at a time.
    fake_counts = torch.zeros(len(fake), dtype=torch.int64, device=device)
    recall_hits = torch.zeros(len(real), dtype=torch.bool, device=device)
    coverage_hits = torch.zeros(len(real), dtype=torch.bool, device=device)
    for rows in _row_blocks(len(real), chunk_size):
        dist = _distances(x[rows], xx[rows], y, yy, cross_dtype)
        radii = real_radii[rows]
        # How many real balls contain each fake sample (precision and density).
        fake_counts += (dist < radii[:, None]).sum(dim=0)
        # Is each real sample inside some fake ball (recall)?
        recall_hits[rows] = (dist < fake_radii[None, :]).any(dim=1)
        # Is each real ball hit by its nearest fake sample (coverage)?
        coverage_hits[rows] = dist.min(dim=1).values < radii

    return _aggregate(fake_counts, recall_hits, coverage_hits, nearest_k)


def _validate(
    real_features: np.ndarray, fake_features: np.ndarray, nearest_k: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reject inputs the metric is undefined for, with a message naming the problem."""
    if isinstance(nearest_k, bool) or not isinstance(nearest_k, int | np.integer):
        raise ValueError(f"nearest_k must be an integer, got {nearest_k!r}")
    if nearest_k < 1:
        raise ValueError(f"nearest_k must be >= 1, got {nearest_k}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise ValueError(f"chunk_size must be an integer, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    arrays = []
    for name, features in (("real_features", real_features), ("fake_features", fake_features)):
        arr = np.asarray(features)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (samples × features), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{name} must be real-valued numbers, got dtype {arr.dtype}")
        if arr.shape[0] <= nearest_k:
            raise ValueError(
                f"{name} has {arr.shape[0]} samples; need more than nearest_k={nearest_k}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        arrays.append(arr)

    real, fake = arrays
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature dimensions differ: real has {real.shape[1]}, fake has {fake.shape[1]}"
        )
    return real, fake


def _distance_dtype(a: np.ndarray, b: np.ndarray) -> torch.dtype:
    return torch.float32 if a.dtype == b.dtype == np.float32 else torch.float64


def _to_torch(features: np.ndarray, device: torch.device) -> torch.Tensor:
    # Upcasting float32 to float64 is exact, so the float64 products below are the
    # same numbers sklearn gets from its upcast chunks.
    array = np.ascontiguousarray(features, dtype=np.float64)
    return torch.from_numpy(array).to(device)


def _squared_norms(z: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,ij->i", z, z)


def _row_blocks(n: int, chunk_size: int) -> list[slice]:
    return [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def _distances(
    a: torch.Tensor,
    aa: torch.Tensor,
    b: torch.Tensor,
    bb: torch.Tensor,
    dtype: torch.dtype,
    self_offset: int | None = None,
) -> torch.Tensor:
    """Euclidean distances between rows of ``a`` and ``b``, in sklearn's order of operations.

    ``self_offset`` says that ``a`` is rows ``self_offset:`` of ``b`` itself; those
    self-distances are set to exactly 0, as sklearn does for X vs X.
    """
    dist = a @ b.T
    # Same association as sklearn: ((-2 a·b) + ||a||²) + ||b||², all in float64.
    dist.mul_(-2).add_(aa[:, None]).add_(bb[None, :])
    # sklearn writes float32 inputs' distances into a float32 matrix *before* the clamp
    # and sqrt; rounding at the same point keeps every comparison identical.
    dist = dist.to(dtype)
    dist.clamp_(min=0)
    if self_offset is not None:
        rows = torch.arange(len(a), device=a.device)
        dist[rows, rows + self_offset] = 0
    return dist.sqrt_()


def _nearest_neighbour_radii(
    z: torch.Tensor, zz: torch.Tensor, nearest_k: int, chunk_size: int, dtype: torch.dtype
) -> torch.Tensor:
    """NND_k of every row of ``z``: the (k+1)-th smallest distance, counting the self zero."""
    radii = torch.empty(len(z), dtype=dtype, device=z.device)
    for rows in _row_blocks(len(z), chunk_size):
        dist = _distances(z[rows], zz[rows], z, zz, dtype, self_offset=rows.start)
        smallest = torch.topk(dist, nearest_k + 1, dim=1, largest=False).values
        # The largest of the k+1 smallest, as the reference takes it after argpartition.
        radii[rows] = smallest.max(dim=1).values
    return radii


def _aggregate(
    fake_counts: torch.Tensor,
    recall_hits: torch.Tensor,
    coverage_hits: torch.Tensor,
    nearest_k: int,
) -> dict[str, float]:
    """Average the per-sample decisions with numpy, in the reference's exact arithmetic."""
    counts = fake_counts.cpu().numpy()
    return {
        "precision": float((counts > 0).mean()),
        "recall": float(recall_hits.cpu().numpy().mean()),
        "density": float((1.0 / float(nearest_k)) * counts.mean()),
        "coverage": float(coverage_hits.cpu().numpy().mean()),
    }
