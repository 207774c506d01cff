"""Precision, recall, density and coverage (Naeem et al. 2020), exact, fast and memory-bounded.

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

How it is fast without being approximate: all N² + M² + NM distances are first
*screened* in float32 (twice the matmul speed of float64 on CPU) on features centred
on the real mean (which keeps float32 cancellation small), with a rigorous bound on
how far each screened squared distance can be from the exact float64 one (classical
dot-product error bounds, ~(2·dim)·u32·(|x-μ|² + |y-μ|²), doubled for safety). A
decision whose screened value clears its threshold by more than that bound is final;
the few that do not, and the k+1 nearest-neighbour candidates of every row, are
recomputed exactly in float64 from the original features. The within-set matrices
are symmetric, so only their upper block triangle is computed. And since coverage's
``min_j d < NND_k(X_i)`` is ``∃j: d < NND_k(X_i)``, it falls out of density's test.

The one thing that cannot be reproduced bit for bit is the BLAS summation order of
x·y (even sklearn's own value for a pair depends on which block of its product the
pair falls in), so distances may differ from sklearn's in the last ulp. That can flip
a decision only at an exact tie between two distinct pairs, e.g. a fake sample that
is a bit-for-bit copy of a real one, where the reference's own answer is rounding
noise. Random continuous features have no such ties, and on exactly representable
features (e.g. small integers, which the tests use) the ties are exact in both.

Unlike the reference, which materialises three full distance matrices, everything is
computed by blocks of ``chunk_size`` rows, so peak extra memory is a float32 copy of
the features plus O(chunk_size × max(N, M)) rather than O(N × M).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["compute_prdc"]

# Relative slack around each squared radius inside which a screened decision is
# redone exactly: covers rounding the distance to float32 before the sqrt, the sqrt
# itself and the threshold's own rounding (each ~1e-7), with a wide safety factor.
_THRESHOLD_SLACK = 1e-5
# Nearest-neighbour candidates each row keeps from the screening pass beyond k+1; a
# row whose candidates could spill past them is recomputed exactly in full.
_EXTRA_CANDIDATES = 8
# Pairs recomputed exactly per batch (their rows are gathered in float64). Kept small:
# fresh allocations of tens of MB page-fault on every use, which costs more than the math.
_REFINE_BATCH = 256
_F32_MAX = float(np.finfo(np.float32).max)


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

    # Any common shift leaves distances unchanged; the real mean makes the screening
    # copies small numbers, so their float32 rounding error is small too.
    centre = real.mean(axis=0, dtype=np.float64)
    screen_dtype = _screen_dtype(real, fake, centre)
    x = _FeatureSet(real, centre, screen_dtype, device)
    y = _FeatureSet(fake, centre, screen_dtype, device)

    real_radii = _nearest_neighbour_radii(x, nearest_k, chunk_size, real_dtype)
    fake_radii = _nearest_neighbour_radii(y, nearest_k, chunk_size, fake_dtype)
    fake_counts, recall_hits, coverage_hits = _cross_decisions(
        x, y, real_radii, fake_radii, chunk_size, cross_dtype
    )
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


def _screen_dtype(real: np.ndarray, fake: np.ndarray, centre: np.ndarray) -> torch.dtype:
    """float32 unless the centred features' squared distances could overflow it."""
    # max/min instead of abs().max(): no full-size temporary.
    largest = max(abs(float(bound)) for z in (real, fake, centre) for bound in (z.max(), z.min()))
    # |x - μ|² ≤ dim·(2·largest)², and a squared distance ≤ 2(|x-μ|² + |y-μ|²).
    worst = 16.0 * real.shape[1] * float(largest) ** 2
    return torch.float32 if worst < _F32_MAX / 4 else torch.float64


def _row_blocks(n: int, chunk_size: int) -> list[slice]:
    return [slice(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


class _FeatureSet:
    """One side's features: exact float64 rows on demand, and a centred screening copy."""

    def __init__(
        self,
        array: np.ndarray,
        centre: np.ndarray,
        screen_dtype: torch.dtype,
        device: torch.device,
        chunk_rows: int = 4096,
    ):
        # float32/float64 inputs are viewed as they are (upcasting float32 is exact);
        # anything else is converted once, as sklearn converts it.
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64)
        self.rows = torch.from_numpy(np.ascontiguousarray(array))
        self.device = device
        self.n, dim = array.shape
        self.norms = torch.empty(self.n, dtype=torch.float64, device=device)
        self.screen = torch.empty((self.n, dim), dtype=screen_dtype, device=device)
        centred_norms = torch.empty(self.n, dtype=torch.float64, device=device)
        # By chunks, so a float32 input is never upcast whole.
        for rows in _row_blocks(self.n, chunk_rows):
            exact = self.exact_rows(rows)
            # Exactly the float64 squared norms sklearn adds to its products.
            self.norms[rows] = torch.einsum("ij,ij->i", exact, exact)
            centred = exact - torch.from_numpy(centre).to(device)
            centred_norms[rows] = torch.einsum("ij,ij->i", centred, centred)
            self.screen[rows] = centred.to(screen_dtype)
        self.screen_norms = torch.einsum("ij,ij->i", self.screen, self.screen)
        self._error_terms(dim, centred_norms)

    def _error_terms(self, dim: int, centred_norms: torch.Tensor) -> None:
        """Per-row parts of the bound on |screened - exact| squared distance.

        For a pair (i, j) the bound is ``self.error[i] + other.error_max``: the screening
        copy's input rounding and float32 dot-product error (≤ (2·dim + 11)·u·(a² + b²)
        with a, b the centred norms), plus the float64 error of sklearn's own formula
        (≤ 2(dim + 4)·u64·(|x|² + |y|²)), plus an absolute term for float32 underflow.
        Each coefficient is doubled for safety.
        """
        unit = torch.finfo(self.screen.dtype).eps / 2
        unit64 = torch.finfo(torch.float64).eps / 2
        screened = 2 * (2 * dim + 16) * unit * centred_norms * 1.01
        exact = 4 * (dim + 4) * unit64 * self.norms
        underflow = (dim + 4) * 2.0**-100
        self.error = screened + exact + underflow
        self.error_max = float(self.error.max())

    def exact_rows(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Rows in float64 (a slice of a float64 input is a view, not a copy)."""
        rows = (
            self.rows[index] if isinstance(index, slice) else self.rows.index_select(0, index.cpu())
        )
        return rows.to(self.device, torch.float64)

    def margin_against(self, other: _FeatureSet) -> torch.Tensor:
        """Per row of self: a bound on the screening error of its distance to any row of other."""
        return self.error + other.error_max


def _screened_sq_distances(
    a: _FeatureSet, rows: slice, b: _FeatureSet, cols: slice, out: torch.Tensor
) -> torch.Tensor:
    """Low-precision squared distances between a[rows] and b[cols] (no clamp).

    Written into the flat buffer ``out``, reused for every block: a fresh block of
    10-100 MB would page-fault all over again each time.
    """
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    dist = out[: shape[0] * shape[1]].view(shape)
    torch.addmm(b.screen_norms[None, cols], a.screen[rows], b.screen[cols].T, alpha=-2, out=dist)
    return dist.add_(a.screen_norms[rows, None])


def _finish(sq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # sklearn writes float32 inputs' distances into a float32 matrix *before* the clamp
    # and sqrt; rounding at the same point keeps every comparison identical.
    return sq.to(dtype).clamp_(min=0).sqrt_()


def _exact_pair_distances(
    a: _FeatureSet, ai: torch.Tensor, b: _FeatureSet, bj: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Exact distances of the pairs (a[ai[p]], b[bj[p]]), in sklearn's order of operations.

    In numpy, single-threaded: these are many small gathers and row dots, for which
    torch's thread pool costs more in synchronisation than it saves (badly so on a
    loaded machine).
    """
    ai_np, bj_np = ai.cpu().numpy(), bj.cpu().numpy()
    a_norms, b_norms = a.norms.cpu().numpy(), b.norms.cpu().numpy()
    a_all, b_all = a.rows.numpy(), b.rows.numpy()
    a_rows = np.empty((_REFINE_BATCH, a_all.shape[1]), dtype=a_all.dtype)
    b_rows = np.empty((_REFINE_BATCH, b_all.shape[1]), dtype=b_all.dtype)
    sq = np.empty(len(ai_np))
    for batch in _row_blocks(len(ai_np), _REFINE_BATCH):
        size = batch.stop - batch.start
        np.take(a_all, ai_np[batch], axis=0, out=a_rows[:size])
        np.take(b_all, bj_np[batch], axis=0, out=b_rows[:size])
        # Upcasting float32 is exact: the same float64 products sklearn's chunks use.
        sq[batch] = np.einsum("ij,ij->i", a_rows[:size], b_rows[:size], dtype=np.float64)
    # Same association as sklearn: ((-2 a·b) + ||a||²) + ||b||², all in float64.
    sq = (-2 * sq + a_norms[ai_np]) + b_norms[bj_np]
    return _finish(torch.from_numpy(sq).to(a.device), dtype)


def _exact_row_distances(
    z: _FeatureSet, rows: torch.Tensor, cols: slice, dtype: torch.dtype
) -> torch.Tensor:
    """Exact distances of rows z[rows] to z[cols] (a block), self-distances set to 0."""
    a = z.exact_rows(rows)
    b = z.exact_rows(cols)
    sq = (a @ b.T).mul_(-2).add_(z.norms[rows, None]).add_(z.norms[None, cols])
    dist = _finish(sq, dtype)
    # sklearn sets the diagonal of X-vs-X distances to exactly 0.
    dist[rows[:, None] == torch.arange(cols.start, cols.stop, device=dist.device)[None, :]] = 0
    return dist


def _merge_smallest(
    best: torch.Tensor, best_index: torch.Tensor, rows: slice, sq: torch.Tensor, offset: int
) -> None:
    """Fold the smallest entries of each row of a block into the running candidates."""
    keep = best.shape[1]
    values, index = torch.topk(sq, min(keep, sq.shape[1]), dim=1, largest=False)
    values = torch.cat([best[rows], values], dim=1)
    index = torch.cat([best_index[rows], index + offset], dim=1)
    values, pos = torch.topk(values, keep, dim=1, largest=False)
    best[rows] = values
    best_index[rows] = index.gather(1, pos)


def _nearest_neighbour_radii(
    z: _FeatureSet, nearest_k: int, chunk_size: int, dtype: torch.dtype
) -> torch.Tensor:
    """NND_k of every row of ``z``: the (k+1)-th smallest distance, counting the self zero."""
    keep = min(nearest_k + 1 + _EXTRA_CANDIDATES, z.n)
    best = torch.full((z.n, keep), torch.inf, dtype=z.screen.dtype, device=z.device)
    best_index = torch.zeros((z.n, keep), dtype=torch.int64, device=z.device)

    # Screening: the matrix is symmetric, so each off-diagonal block serves both its
    # rows and (transposed) its columns.
    blocks = _row_blocks(z.n, chunk_size)
    buffer = torch.empty(min(chunk_size, z.n) ** 2, dtype=best.dtype, device=z.device)
    pairs = [(i, j) for i in range(len(blocks)) for j in range(i, len(blocks))]
    for i, j in tqdm(pairs, desc="prdc radii", unit="block", mininterval=5, disable=None):
        rows, cols = blocks[i], blocks[j]
        sq = _screened_sq_distances(z, rows, z, cols, buffer)
        if i == j:
            sq.fill_diagonal_(0)  # the reference's self-distance is exactly 0
        _merge_smallest(best, best_index, rows, sq, cols.start)
        if i != j:
            _merge_smallest(best, best_index, cols, sq.T, rows.start)

    # With v the screened (k+1)-th smallest and m the error margin, the exact (k+1)-th
    # smallest R lies in [v - m, v + m]. Candidates screened below v - 2m are surely
    # below R (counted, not computed); those above v + 2m surely above it (ignored).
    # R is then the (k+1-below)-th smallest exact value of the few in between.
    margin = z.margin_against(z).to(best.dtype)
    v = best[:, nearest_k]
    slack = _THRESHOLD_SLACK * v.abs() + 2 * margin
    surely_below = best < (v - slack)[:, None]
    candidate = ~surely_below & (best <= (v + slack)[:, None])
    # If even the last kept candidate is within the limit, more may lie beyond it.
    spilled = candidate[:, -1] & (keep < z.n)

    exact = torch.full((z.n, keep), torch.inf, dtype=dtype, device=z.device)
    ri, ci = candidate.nonzero(as_tuple=True)
    cols = best_index[ri, ci]
    values = _exact_pair_distances(z, ri, z, cols, dtype)
    values[ri == cols] = 0  # the reference's self-distance is exactly 0
    exact[ri, ci] = values
    rank = nearest_k - surely_below.sum(dim=1, keepdim=True)
    radii = exact.sort(dim=1).values.gather(1, rank).squeeze(1)

    for rows in _row_blocks(int(spilled.sum()), chunk_size):
        spilled_rows = spilled.nonzero().squeeze(1)[rows]
        radii[spilled_rows] = _exact_kth_smallest(z, spilled_rows, nearest_k + 1, chunk_size, dtype)
    return radii


def _exact_kth_smallest(
    z: _FeatureSet, rows: torch.Tensor, kth: int, chunk_size: int, dtype: torch.dtype
) -> torch.Tensor:
    """The kth smallest exact distance of each of ``rows`` to all of z (the slow path)."""
    smallest = torch.full((len(rows), kth), torch.inf, dtype=dtype, device=z.device)
    for cols in _row_blocks(z.n, chunk_size):
        dist = _exact_row_distances(z, rows, cols, dtype)
        both = torch.cat([smallest, dist], dim=1)
        smallest = torch.topk(both, kth, dim=1, largest=False).values
    return smallest.max(dim=1).values


def _squared_bounds(
    radii: torch.Tensor, margin: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Screened squared distances below ``low`` are surely inside a ball; above ``high``, not."""
    square = radii.double() ** 2
    low = square * (1 - _THRESHOLD_SLACK) - margin
    low[radii == 0] = -torch.inf  # nothing is strictly closer than 0
    high = square * (1 + _THRESHOLD_SLACK) + margin
    return low.to(dtype), high.to(dtype)


def _cross_decisions(
    x: _FeatureSet,
    y: _FeatureSet,
    real_radii: torch.Tensor,
    fake_radii: torch.Tensor,
    chunk_size: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the real×fake distances, a block of real rows at a time.

    Pairs inside either ball are rare (density ≈ a few per fake sample), so each block
    is scanned once for pairs that *could* be inside one (screened value ≤ the upper
    bound) and everything after that works on that short list.
    """
    screen = x.screen.dtype
    real_low, real_high = _squared_bounds(real_radii, x.margin_against(y), screen)
    fake_low, fake_high = _squared_bounds(fake_radii, y.margin_against(x), screen)
    everything = slice(0, y.n)

    fake_counts = torch.zeros(y.n, dtype=torch.int64, device=x.device)
    recall_hits = torch.zeros(x.n, dtype=torch.bool, device=x.device)
    coverage_hits = torch.zeros(x.n, dtype=torch.bool, device=x.device)
    blocks = _row_blocks(x.n, chunk_size)
    buffer = torch.empty(min(chunk_size, x.n) * y.n, dtype=screen, device=x.device)
    for rows in tqdm(blocks, desc="prdc real×fake", unit="block", mininterval=5, disable=None):
        sq = _screened_sq_distances(x, rows, y, everything, buffer)
        near = (sq <= real_high[rows, None]).logical_or_(sq <= fake_high[None, :])
        local_i, j = near.nonzero(as_tuple=True)
        i = local_i + rows.start
        near_sq = sq[local_i, j]
        # Is fake j inside the ball of real i (precision, density, coverage)?
        in_real_ball = _settle(near_sq, real_low[i], real_high[i], x, i, y, j, real_radii[i], dtype)
        # Is real i inside the ball of fake j (recall)?
        in_fake_ball = _settle(near_sq, fake_low[j], fake_high[j], x, i, y, j, fake_radii[j], dtype)

        fake_counts += torch.bincount(j[in_real_ball], minlength=y.n)
        # min_j d(X_i, Y_j) < NND_k(X_i) exactly when some fake is inside ball i.
        coverage_hits[i[in_real_ball]] = True
        recall_hits[i[in_fake_ball]] = True
    return fake_counts, recall_hits, coverage_hits


def _settle(
    sq: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    x: _FeatureSet,
    i: torch.Tensor,
    y: _FeatureSet,
    j: torch.Tensor,
    radii: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Inside-the-ball decisions for pairs (x[i], y[j]); the unsure ones are redone exactly."""
    inside = sq < low
    unsure = ~inside & (sq <= high)
    if unsure.any():
        exact = _exact_pair_distances(x, i[unsure], y, j[unsure], dtype)
        inside[unsure] = exact < radii[unsure]
    return inside


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
