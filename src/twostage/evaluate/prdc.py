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
are symmetric, so only their upper triangle of tiles is computed. Each row keeps its
running few smallest screened values; a tile's entries are compared with the row's
current largest, and only the few below it are merged. And since coverage's
``min_j d < NND_k(X_i)`` is ``∃j: d < NND_k(X_i)``, it falls out of density's test.

The one thing that cannot be reproduced bit for bit is the BLAS summation order of
x·y (even sklearn's own value for a pair depends on which block of its product the
pair falls in), so distances may differ from sklearn's in the last ulp. That can flip
a decision only at an exact tie between two distinct pairs, e.g. a fake sample that
is a bit-for-bit copy of a real one, where the reference's own answer is rounding
noise. Random continuous features have no such ties, and on exactly representable
features (e.g. small integers, which the tests use) the ties are exact in both.

Unlike the reference, which materialises three full distance matrices, everything is
computed by tiles of ``chunk_size`` rows × ``_TILE`` columns, and the centred float32
rows of a block are made when it is screened (no full-size copy is kept), so peak
extra memory is O((chunk_size + _TILE) × dim) plus O(N + M) per-row state rather than
O(N × M): about 25 MiB at the defaults with 2048-D features, besides the features
themselves. The buffers are reused from tile to tile: fresh blocks of tens of MB would
page-fault every time, which costs more than the maths.

On the CPU this is numpy alone: torch (~350 MiB of resident memory once imported) is
imported only when ``device`` names another device, and then only the screening
products run there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:
    import torch

__all__ = ["compute_prdc"]

# Relative slack around each squared radius inside which a screened decision is
# redone exactly: covers rounding the distance to float32 before the sqrt, the sqrt
# itself and the threshold's own rounding (each ~1e-7), with a wide safety factor.
_THRESHOLD_SLACK = 1e-5
# Nearest-neighbour candidates each row keeps from the screening pass beyond k+1; a
# row whose candidates could spill past them is recomputed exactly in full.
_EXTRA_CANDIDATES = 8
# Pairs recomputed exactly per batch (their rows are gathered in float64). Kept small:
# fresh allocations page-fault on every use, and these rows are live beside a tile.
_REFINE_BATCH = 64
# Columns per screened tile: a block of chunk_size rows meets the other side this many
# columns at a time, so the tile, its masks and the other side's screened rows stay small.
_TILE = 256
# Rows per partial sort when rows take their first candidates from a whole tile part.
_SORT_ROWS = 256
_F32_MAX = float(np.finfo(np.float32).max)

# a, b, out -> out = a @ b.T (the screening product; numpy's, or torch's on a device).
Product = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def compute_prdc(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    nearest_k: int = 3,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features``.

    ``device`` other than the CPU (e.g. ``"cuda"``) runs the float32 screening products
    there with torch; on the CPU, torch is not imported at all.
    """
    real, fake = _validate(real_features, fake_features, nearest_k, chunk_size)
    product = _product_for(device)
    # sklearn keeps float32 distances only when *both* sides are float32; anything else
    # (float64, float16, ints) is computed and compared in float64.
    real_dtype = _distance_dtype(real, real)
    fake_dtype = _distance_dtype(fake, fake)
    cross_dtype = _distance_dtype(real, fake)

    # Any common shift leaves distances unchanged; the real mean makes the screened
    # rows small numbers, so their float32 rounding error is small too.
    centre = real.mean(axis=0, dtype=np.float64)
    screen_dtype = _screen_dtype(real, fake, centre)
    x = _FeatureSet(real, centre, screen_dtype)
    y = _FeatureSet(fake, centre, screen_dtype)

    real_radii = _nearest_neighbour_radii(x, nearest_k, chunk_size, real_dtype, product)
    fake_radii = _nearest_neighbour_radii(y, nearest_k, chunk_size, fake_dtype, product)
    fake_counts, recall_hits, coverage_hits = _cross_decisions(
        x, y, real_radii, fake_radii, chunk_size, cross_dtype, product
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
        # min and max propagate NaN and reach any ±inf, without a full-size mask.
        if not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
            raise ValueError(f"{name} contains NaN or infinite values")
        arrays.append(arr)

    real, fake = arrays
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature dimensions differ: real has {real.shape[1]}, fake has {fake.shape[1]}"
        )
    return real, fake


def _product_for(device: str | torch.device) -> Product:
    """numpy's matmul on the CPU; torch's on any other device (imported only then)."""
    if str(device).split(":")[0] == "cpu":
        return _numpy_product
    return _DeviceProduct(device)


def _numpy_product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b.T, out=out)


class _DeviceProduct:
    """``a @ b.T`` on a torch device, copied back into the numpy buffer ``out``.

    Only the products move: they are where the time goes, and everything else is a
    short list of pairs (or one pass over a tile) that numpy does as well.
    """

    def __init__(self, device: str | torch.device):
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        torch = self.torch
        matmul = torch.backends.cuda.matmul
        # The screening error bound assumes IEEE float32 products, not TF32 ones.
        allow_tf32, matmul.allow_tf32 = matmul.allow_tf32, False
        try:
            a_dev = torch.from_numpy(a).to(self.device)
            b_dev = torch.from_numpy(b).to(self.device)
            torch.from_numpy(out).copy_(a_dev @ b_dev.T)
        finally:
            matmul.allow_tf32 = allow_tf32


def _distance_dtype(a: np.ndarray, b: np.ndarray) -> type:
    return np.float32 if a.dtype == b.dtype == np.float32 else np.float64


def _screen_dtype(real: np.ndarray, fake: np.ndarray, centre: np.ndarray) -> type:
    """float32 unless the centred features' squared distances could overflow it."""
    # max/min instead of abs().max(): no full-size temporary.
    largest = max(abs(float(bound)) for z in (real, fake, centre) for bound in (z.max(), z.min()))
    # |x - μ|² ≤ dim·(2·largest)², and a squared distance ≤ 2(|x-μ|² + |y-μ|²).
    worst = 16.0 * real.shape[1] * float(largest) ** 2
    return np.float32 if worst < _F32_MAX / 4 else np.float64


def _row_blocks(n: int, chunk_size: int, start: int = 0) -> list[slice]:
    return [slice(first, min(first + chunk_size, n)) for first in range(start, n, chunk_size)]


def _rows_of(values: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", values, values)


class _FeatureSet:
    """One side's features: exact float64 rows on demand, centred screening rows by block.

    No full-size screening copy is kept: a block's rows are centred and cast into a
    reused buffer when the block is screened (about 1/(2·chunk_size) of the product's
    work), so the features themselves are the only full-size arrays.
    """

    def __init__(
        self, array: np.ndarray, centre: np.ndarray, screen_dtype: type, chunk_rows: int = 256
    ):
        # float32/float64 inputs are used as they are (upcasting float32 is exact);
        # anything else is converted once, as sklearn converts it.
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64)
        self.rows = np.ascontiguousarray(array)
        self.centre = centre
        self.screen_dtype = screen_dtype
        self.n, dim = array.shape
        self.norms = np.empty(self.n)
        self.screen_norms = np.empty(self.n, dtype=screen_dtype)
        centred_norms = np.empty(self.n)
        centred = np.empty((min(chunk_rows, self.n), dim))
        screened = np.empty((min(chunk_rows, self.n), dim), dtype=screen_dtype)
        # By small blocks, so a float32 input is never upcast whole.
        for rows in _row_blocks(self.n, chunk_rows):
            size = rows.stop - rows.start
            exact = self.exact_rows(rows)
            # Exactly the float64 squared norms sklearn adds to its products.
            self.norms[rows] = _rows_of(exact)
            np.subtract(exact, centre, out=centred[:size])
            centred_norms[rows] = _rows_of(centred[:size])
            self.screen_norms[rows] = _rows_of(self.screen_rows(rows, screened))
        self._error_terms(dim, centred_norms)

    def _error_terms(self, dim: int, centred_norms: np.ndarray) -> None:
        """Per-row parts of the bound on |screened - exact| squared distance.

        For a pair (i, j) the bound is ``self.error[i] + other.error_max``: the screening
        rows' input rounding and float32 dot-product error (≤ (2·dim + 11)·u·(a² + b²)
        with a, b the centred norms), plus the float64 error of sklearn's own formula
        (≤ 2(dim + 4)·u64·(|x|² + |y|²)), plus an absolute term for float32 underflow.
        Each coefficient is doubled for safety.
        """
        unit = np.finfo(self.screen_dtype).eps / 2
        unit64 = np.finfo(np.float64).eps / 2
        screened = 2 * (2 * dim + 16) * unit * centred_norms * 1.01
        exact = 4 * (dim + 4) * unit64 * self.norms
        underflow = (dim + 4) * 2.0**-100
        self.error = screened + exact + underflow
        self.error_max = float(self.error.max())

    def exact_rows(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows in float64 (a slice of a float64 input is a view, not a copy)."""
        return self.rows[index].astype(np.float64, copy=False)

    def screen_rows(self, rows: slice, out: np.ndarray) -> np.ndarray:
        """Rows ``rows`` centred (in float64) and rounded to the screening dtype, in ``out``."""
        dest = out[: rows.stop - rows.start]
        np.subtract(self.rows[rows], self.centre, out=dest, casting="unsafe")
        return dest

    def margin_against(self, other: _FeatureSet) -> np.ndarray:
        """Per row of self: a bound on the screening error of its distance to any row of other."""
        return self.error + other.error_max


def _screened_tiles(
    a: _FeatureSet,
    b: _FeatureSet,
    chunk_size: int,
    product: Product,
    desc: str,
    symmetric: bool = False,
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Screened squared distances (no clamp) of a[rows] to b[cols], tile by tile.

    Blocks of ``chunk_size`` rows of a meet b ``_TILE`` columns at a time. With
    ``symmetric`` (a is b) only the upper triangle is visited: tiles to the right of the
    row block in full, and a tile inside it only for the rows down to its own last one
    (its bottom square holds the diagonal). Each yielded tile is a view of one reused
    buffer, valid until the next: fresh blocks of 10-100 MB would page-fault every time.
    """
    dim = a.rows.shape[1]
    tile_cols = min(_TILE, b.n)
    a_buffer = np.empty((min(chunk_size, a.n), dim), dtype=a.screen_dtype)
    b_buffer = np.empty((tile_cols, dim), dtype=b.screen_dtype)
    buffer = np.empty(min(chunk_size, a.n) * tile_cols, dtype=a.screen_dtype)
    blocks = _row_blocks(a.n, chunk_size)
    for rows in tqdm(blocks, desc=desc, unit="block", mininterval=5, disable=None):
        a_rows = a.screen_rows(rows, a_buffer)
        col_blocks = _row_blocks(b.n, chunk_size, rows.start) if symmetric else [slice(0, b.n)]
        for block in col_blocks:
            for cols in _row_blocks(block.stop, _TILE, block.start):
                if symmetric and cols.start < rows.stop:
                    # Inside the row block: its rows are screened already.
                    tile_rows = slice(rows.start, cols.stop)
                    b_rows = a_rows[cols.start - rows.start : cols.stop - rows.start]
                else:
                    tile_rows = rows
                    b_rows = b.screen_rows(cols, b_buffer)
                shape = (tile_rows.stop - tile_rows.start, cols.stop - cols.start)
                sq = buffer[: shape[0] * shape[1]].reshape(shape)
                product(a_rows[: shape[0]], b_rows, sq)
                # Same association as before: (-2 a·b + |b|²) + |a|².
                sq *= -2
                sq += b.screen_norms[cols]
                sq += a.screen_norms[tile_rows, None]
                yield tile_rows, cols, sq


def _finish(sq: np.ndarray, dtype: type) -> np.ndarray:
    # sklearn writes float32 inputs' distances into a float32 matrix *before* the clamp
    # and sqrt; rounding at the same point keeps every comparison identical.
    dist = sq.astype(dtype, copy=False)
    np.maximum(dist, 0, out=dist)
    return np.sqrt(dist, out=dist)


def _exact_pair_distances(
    a: _FeatureSet, ai: np.ndarray, b: _FeatureSet, bj: np.ndarray, dtype: type
) -> np.ndarray:
    """Exact distances of the pairs (a[ai[p]], b[bj[p]]), in sklearn's order of operations."""
    a_all, b_all = a.rows, b.rows
    a_rows = np.empty((min(_REFINE_BATCH, len(ai)), a_all.shape[1]), dtype=a_all.dtype)
    b_rows = np.empty((min(_REFINE_BATCH, len(ai)), b_all.shape[1]), dtype=b_all.dtype)
    sq = np.empty(len(ai))
    for batch in _row_blocks(len(ai), _REFINE_BATCH):
        size = batch.stop - batch.start
        np.take(a_all, ai[batch], axis=0, out=a_rows[:size])
        np.take(b_all, bj[batch], axis=0, out=b_rows[:size])
        # Upcasting float32 is exact: the same float64 products sklearn's chunks use.
        sq[batch] = np.einsum("ij,ij->i", a_rows[:size], b_rows[:size], dtype=np.float64)
    # Same association as sklearn: ((-2 a·b) + ||a||²) + ||b||², all in float64.
    sq = (-2 * sq + a.norms[ai]) + b.norms[bj]
    return _finish(sq, dtype)


def _exact_row_distances(z: _FeatureSet, rows: np.ndarray, cols: slice, dtype: type) -> np.ndarray:
    """Exact distances of rows z[rows] to z[cols] (a block), self-distances set to 0."""
    sq = z.exact_rows(rows) @ z.exact_rows(cols).T
    sq *= -2
    sq += z.norms[rows, None]
    sq += z.norms[None, cols]
    dist = _finish(sq, dtype)
    # sklearn sets the diagonal of X-vs-X distances to exactly 0.
    dist[rows[:, None] == np.arange(cols.start, cols.stop)[None, :]] = 0
    return dist


def _merge_smallest(
    best: np.ndarray,
    best_index: np.ndarray,
    row_start: int,
    col_start: int,
    block: np.ndarray,
    mask: np.ndarray,
) -> None:
    """Fold a block's entries into its rows' running ``keep`` smallest (kept sorted).

    ``block`` holds rows ``row_start...`` and columns ``col_start...`` (it may be a
    transposed view); ``mask`` is a scratch bool array of its shape and layout. Only
    entries below a row's current last candidate can enter; once a row has seen one
    tile those are few, and the rest of the tile costs one comparison.
    """
    keep = best.shape[1]
    n_rows = block.shape[0]
    target = slice(row_start, row_start + n_rows)
    # By column parts, so that a row's first part (sorted in full) already sets a
    # threshold that filters the rest of the block.
    for part in _row_blocks(block.shape[1], _TILE):
        values, part_mask = block[:, part], mask[:, part]
        np.less(values, best[target, -1, None], out=part_mask)
        if np.count_nonzero(part_mask) <= 2 * keep * n_rows:
            local_rows, local_cols = _nonzero(part_mask)
            found = values[local_rows, local_cols]
        else:  # rows still filling up: each row's keep smallest of the part
            local_rows, local_cols, found = _smallest_per_row(values, keep)
        if len(found):
            cols = local_cols + col_start + part.start
            _fold(best, best_index, local_rows + row_start, cols, found)


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D mask (sorted by row), via the ~10x faster flatnonzero."""
    if mask.T.flags.c_contiguous and not mask.flags.c_contiguous:  # a transposed view
        cols, rows = np.divmod(np.flatnonzero(mask.T), mask.shape[0])
        order = np.argsort(rows, kind="stable")
        return rows[order], cols[order]
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _smallest_per_row(block: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of each row's ``keep`` smallest entries, by partial sorts."""
    found = []
    for rows in _row_blocks(block.shape[0], _SORT_ROWS):
        part = np.ascontiguousarray(block[rows])
        if part.shape[1] > keep:
            cols = np.argpartition(part, keep - 1, axis=1)[:, :keep]
        else:
            cols = np.broadcast_to(np.arange(part.shape[1]), part.shape)
        row_ids = np.broadcast_to(np.arange(rows.start, rows.stop)[:, None], cols.shape)
        found.append((row_ids.ravel(), cols.ravel(), np.take_along_axis(part, cols, 1).ravel()))
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def _fold(
    best: np.ndarray, best_index: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> None:
    """Each row in ``rows`` (sorted): its ``keep`` smallest of its candidates and the new values."""
    keep = best.shape[1]
    starts = np.flatnonzero(np.diff(rows, prepend=-1))
    touched = rows[starts]
    counts = np.diff(starts, append=len(rows))
    # A small matrix per touched row: its candidates, then its new values, then inf.
    slot = keep + np.arange(len(rows)) - np.repeat(starts, counts)
    row_slot = np.repeat(np.arange(len(touched)), counts)
    merged = np.full((len(touched), keep + int(counts.max())), np.inf, dtype=best.dtype)
    merged_index = np.zeros(merged.shape, dtype=np.int64)
    merged[:, :keep], merged_index[:, :keep] = best[touched], best_index[touched]
    merged[row_slot, slot], merged_index[row_slot, slot] = values, cols
    order = np.argsort(merged, axis=1, kind="stable")[:, :keep]
    best[touched] = np.take_along_axis(merged, order, axis=1)
    best_index[touched] = np.take_along_axis(merged_index, order, axis=1)


def _nearest_neighbour_radii(
    z: _FeatureSet, nearest_k: int, chunk_size: int, dtype: type, product: Product
) -> np.ndarray:
    """NND_k of every row of ``z``: the (k+1)-th smallest distance, counting the self zero."""
    keep = min(nearest_k + 1 + _EXTRA_CANDIDATES, z.n)
    best = np.full((z.n, keep), np.inf, dtype=z.screen_dtype)
    best_index = np.zeros((z.n, keep), dtype=np.int64)

    # Screening: the matrix is symmetric, so each tile above the diagonal serves both
    # its rows and (transposed) its columns; the square on the diagonal, its rows.
    masks = np.empty(min(chunk_size, z.n) * min(_TILE, z.n), dtype=bool)
    tiles = _screened_tiles(z, z, chunk_size, product, "prdc radii", symmetric=True)
    for rows, cols, sq in tiles:
        above = min(cols.start, rows.stop) - rows.start
        if above:
            upper = sq[:above]
            mask = masks[: upper.size].reshape(upper.shape)
            _merge_smallest(best, best_index, rows.start, cols.start, upper, mask)
            _merge_smallest(best, best_index, cols.start, rows.start, upper.T, mask.T)
        if above < sq.shape[0]:
            square = sq[above:]
            np.fill_diagonal(square, 0)  # the reference's self-distance is exactly 0
            mask = masks[: square.size].reshape(square.shape)
            _merge_smallest(best, best_index, cols.start, cols.start, square, mask)

    # With v the screened (k+1)-th smallest and m the error margin, the exact (k+1)-th
    # smallest R lies in [v - m, v + m]. Candidates screened below v - 2m are surely
    # below R (counted, not computed); those above v + 2m surely above it (ignored).
    # R is then the (k+1-below)-th smallest exact value of the few in between.
    margin = z.margin_against(z).astype(best.dtype)
    v = best[:, nearest_k]
    slack = _THRESHOLD_SLACK * np.abs(v) + 2 * margin
    surely_below = best < (v - slack)[:, None]
    candidate = ~surely_below & (best <= (v + slack)[:, None])
    # If even the last kept candidate is within the limit, more may lie beyond it.
    spilled = candidate[:, -1] & (keep < z.n)

    exact = np.full((z.n, keep), np.inf, dtype=dtype)
    ri, ci = np.nonzero(candidate)
    cols = best_index[ri, ci]
    values = _exact_pair_distances(z, ri, z, cols, dtype)
    values[ri == cols] = 0  # the reference's self-distance is exactly 0
    exact[ri, ci] = values
    rank = nearest_k - surely_below.sum(axis=1, keepdims=True)
    radii = np.take_along_axis(np.sort(exact, axis=1), rank, axis=1)[:, 0]

    spilled_rows = np.flatnonzero(spilled)
    for rows in _row_blocks(len(spilled_rows), chunk_size):
        some = spilled_rows[rows]
        radii[some] = _exact_kth_smallest(z, some, nearest_k + 1, chunk_size, dtype)
    return radii


def _exact_kth_smallest(
    z: _FeatureSet, rows: np.ndarray, kth: int, chunk_size: int, dtype: type
) -> np.ndarray:
    """The kth smallest exact distance of each of ``rows`` to all of z (the slow path)."""
    smallest = np.full((len(rows), kth), np.inf, dtype=dtype)
    for cols in _row_blocks(z.n, chunk_size):
        both = np.concatenate([smallest, _exact_row_distances(z, rows, cols, dtype)], axis=1)
        smallest = np.partition(both, kth - 1, axis=1)[:, :kth]
    return smallest.max(axis=1)


def _squared_bounds(
    radii: np.ndarray, margin: np.ndarray, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """Screened squared distances below ``low`` are surely inside a ball; above ``high``, not."""
    square = radii.astype(np.float64) ** 2
    low = square * (1 - _THRESHOLD_SLACK) - margin
    low[radii == 0] = -np.inf  # nothing is strictly closer than 0
    high = square * (1 + _THRESHOLD_SLACK) + margin
    return low.astype(dtype), high.astype(dtype)


def _cross_decisions(
    x: _FeatureSet,
    y: _FeatureSet,
    real_radii: np.ndarray,
    fake_radii: np.ndarray,
    chunk_size: int,
    dtype: type,
    product: Product,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the real×fake distances, tile by tile.

    Pairs inside either ball are rare (density ≈ a few per fake sample), so each tile
    is scanned once for pairs that *could* be inside one (screened value ≤ the upper
    bound) and everything after that works on that short list.
    """
    real_low, real_high = _squared_bounds(real_radii, x.margin_against(y), x.screen_dtype)
    fake_low, fake_high = _squared_bounds(fake_radii, y.margin_against(x), x.screen_dtype)

    fake_counts = np.zeros(y.n, dtype=np.int64)
    recall_hits = np.zeros(x.n, dtype=bool)
    coverage_hits = np.zeros(x.n, dtype=bool)
    size = min(chunk_size, x.n) * min(_TILE, y.n)
    near_buffer, other_buffer = np.empty(size, dtype=bool), np.empty(size, dtype=bool)
    for rows, cols, sq in _screened_tiles(x, y, chunk_size, product, "prdc real×fake"):
        near = near_buffer[: sq.size].reshape(sq.shape)
        other = other_buffer[: sq.size].reshape(sq.shape)
        np.less_equal(sq, real_high[rows, None], out=near)
        near |= np.less_equal(sq, fake_high[None, cols], out=other)
        local_i, local_j = _nonzero(near)
        i, j = local_i + rows.start, local_j + cols.start
        near_sq = sq[local_i, local_j]
        # Is fake j inside the ball of real i (precision, density, coverage)?
        in_real_ball = _settle(near_sq, real_low[i], real_high[i], x, i, y, j, real_radii[i], dtype)
        # Is real i inside the ball of fake j (recall)?
        in_fake_ball = _settle(near_sq, fake_low[j], fake_high[j], x, i, y, j, fake_radii[j], dtype)

        np.add.at(fake_counts, j[in_real_ball], 1)
        # min_j d(X_i, Y_j) < NND_k(X_i) exactly when some fake is inside ball i.
        coverage_hits[i[in_real_ball]] = True
        recall_hits[i[in_fake_ball]] = True
    return fake_counts, recall_hits, coverage_hits


def _settle(
    sq: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    x: _FeatureSet,
    i: np.ndarray,
    y: _FeatureSet,
    j: np.ndarray,
    radii: np.ndarray,
    dtype: type,
) -> np.ndarray:
    """Inside-the-ball decisions for pairs (x[i], y[j]); the unsure ones are redone exactly."""
    inside = sq < low
    unsure = ~inside & (sq <= high)
    if unsure.any():
        exact = _exact_pair_distances(x, i[unsure], y, j[unsure], dtype)
        inside[unsure] = exact < radii[unsure]
    return inside


def _aggregate(
    fake_counts: np.ndarray,
    recall_hits: np.ndarray,
    coverage_hits: np.ndarray,
    nearest_k: int,
) -> dict[str, float]:
    """Average the per-sample decisions with numpy, in the reference's exact arithmetic."""
    return {
        "precision": float((fake_counts > 0).mean()),
        "recall": float(recall_hits.mean()),
        "density": float((1.0 / float(nearest_k)) * fake_counts.mean()),
        "coverage": float(coverage_hits.mean()),
    }
