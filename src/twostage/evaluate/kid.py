"""Kernel Inception Distance, computed exactly as torch-fidelity 0.4 computes it.

``torch_fidelity.metric_kid.kid_features_to_metric`` is one small numpy function, but
importing it imports torch-fidelity's package (torchvision, torch._dynamo): seconds per
evaluate job, for a metric that needs none of it. This is the same estimator, operation
for operation: the same subset draws (``np.random.RandomState(seed)``: fakes, then reals,
per subset, without replacement), the polynomial kernel ``(x·y / d + 1) ** 3`` and the
unbiased MMD² in float32 (torch-fidelity gets float32 features), the same numpy
reductions in the same order, then mean and ``np.std`` over the subsets.

It has to be the same arithmetic, not just the same formula: in float32 one subset's MMD²
is a difference of two sums of ~10⁶ kernel values, so a float64 computation (or another
summation order) moves KID by ~1e-4 relative on real features, far more than the rounding
the written numbers may change by (tests/test_evaluation.py compares with torch-fidelity).

Nor can the subsets' blocks be gathered from kernel matrices computed once: whether an
entry of a product comes out bitwise the same wherever it sits is up to the BLAS kernel
(with OpenBLAS's AVX2 ones it does not, and KID moved by 1e-4 relative), so each subset's
three kernels are computed from its own features, as torch-fidelity does.
"""

from __future__ import annotations

import numpy as np

# torch-fidelity's defaults (``kid_kernel_poly_*``; gamma None means 1 / feature dim).
DEGREE = 3
COEF0 = 1


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x yᵀ / d + 1) ** 3`` in the features' dtype (``x is y``: numpy's symmetric product)."""
    return (np.matmul(x, y.T) * (1.0 / x.shape[1]) + COEF0) ** DEGREE


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> np.floating:
    """The unbiased MMD² estimate from the three m × m kernel matrices (diagonals dropped
    from the within-set sums), reduced exactly as torch-fidelity's ``mmd2`` does."""
    m = k_xx.shape[0]
    diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)
    kt_xx_sum = (k_xx.sum(axis=1) - diag_x).sum()
    kt_yy_sum = (k_yy.sum(axis=1) - diag_y).sum()
    k_xy_sum = k_xy.sum(axis=0).sum()
    mmd2 = (kt_xx_sum + kt_yy_sum) / (m * (m - 1))
    mmd2 -= 2 * k_xy_sum / (m * m)
    return mmd2


def kid_mean_std(
    features_1: np.ndarray, features_2: np.ndarray, subsets: int, subset_size: int, seed: int
) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets of ``subset_size`` of each set,
    equal to ``kid_features_to_metric`` on the float32 tensors of the same features."""
    f1 = np.asarray(features_1, dtype=np.float32)
    f2 = np.asarray(features_2, dtype=np.float32)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"KID needs two N×D feature sets of one D, got {f1.shape} and {f2.shape}")
    n1, n2 = len(f1), len(f2)
    if subset_size > min(n1, n2):
        raise ValueError(f"KID subset size {subset_size} exceeds the sample counts {n1}, {n2}")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(n1, subset_size, replace=False)]
        y = f2[rng.choice(n2, subset_size, replace=False)]
        mmds[i] = mmd2_unbiased(
            polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y)
        )
    return float(np.mean(mmds)), float(np.std(mmds))
