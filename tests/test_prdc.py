"""Our chunked PRDC against the reference ``prdc`` package, decision for decision."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import prdc
import pytest
import torch
from conftest import run_in_fresh_interpreter

from twostage.evaluate import prdc as prdc_module
from twostage.evaluate.prdc import compute_prdc

KEYS = ("precision", "recall", "density", "coverage")


def reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    # The reference prints the set sizes; keep the test output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return prdc.compute_prdc(real, fake, k)


def assert_same(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(KEYS)
    for key in KEYS:
        assert isinstance(ours[key], float)
        assert ours[key] == ref[key], f"{key}: ours {ours[key]!r} != reference {ref[key]!r}"


def gaussian_sets(
    seed: int, n: int, m: int, dim: int, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n, dim))
    # Shifted and widened so all four metrics land strictly between 0 and their max.
    fake = 1.2 * rng.standard_normal((m, dim)) + 0.3
    return real.astype(dtype), fake.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("seed", "n", "m", "dim", "k", "chunk_size"),
    [
        (0, 200, 200, 64, 3, 64),  # chunk divides N
        (1, 300, 170, 32, 3, 77),  # N != M, chunk divides neither
        (2, 150, 260, 16, 5, 41),  # M > N
        (3, 257, 250, 128, 5, 1000),  # one chunk holds everything
        (4, 90, 110, 8, 3, 1),  # one row at a time
        (5, 120, 100, 2048, 3, 50),  # the real feature width
    ],
)
def test_matches_reference(seed, n, m, dim, k, chunk_size, dtype):
    real, fake = gaussian_sets(seed, n, m, dim, dtype)
    ours = compute_prdc(real, fake, nearest_k=k, chunk_size=chunk_size)
    assert_same(ours, reference(real, fake, k))


def test_matches_reference_mixed_dtypes():
    # float32 real vs float64 fake: sklearn uses float32 within the real set, float64 across.
    real, _ = gaussian_sets(6, 140, 130, 24, np.float32)
    _, fake = gaussian_sets(7, 140, 130, 24, np.float64)
    assert_same(compute_prdc(real, fake, 3, chunk_size=33), reference(real, fake, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 5])
def test_duplicates_within_each_set(dtype, k):
    # Repeated rows make zero/near-zero neighbour distances, so some radii come from
    # duplicates and the self-zero must be counted exactly once.
    rng = np.random.default_rng(10 + k)
    real = rng.standard_normal((160, 16))
    fake = rng.standard_normal((150, 16)) + 0.2
    real[80:100] = real[:20]
    real[-4:] = real[0]  # one point repeated k or more times: radius exactly 0
    fake[70:90] = fake[:20]
    real, fake = real.astype(dtype), fake.astype(dtype)
    assert_same(compute_prdc(real, fake, k, chunk_size=37), reference(real, fake, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 5])
def test_exact_ties_on_integer_grid(dtype, k):
    # Small integers make every distance exact in any summation order, so equal
    # distances are exactly equal in both implementations and the strict `<` decides.
    rng = np.random.default_rng(20 + k)
    real = rng.integers(-2, 3, size=(180, 4)).astype(dtype)
    fake = rng.integers(-2, 3, size=(170, 4)).astype(dtype)
    fake[:40] = real[rng.integers(0, 180, 40)]  # fakes sitting exactly on real points
    real_sq = ((real[:, None, :] - real[None, :, :]) ** 2).sum(-1)
    assert (real_sq == 0).sum() > len(real), "the grid should produce duplicate real points"
    assert_same(compute_prdc(real, fake, k, chunk_size=29), reference(real, fake, k))


def test_hand_checked_1d_case():
    # k=1. Real radii: 1 for 0,1,2,3,10,11 and 69 for 80; fake radii: 2, 2, 6.5, 31.
    # Fakes inside real balls: 0.5 (balls of 0 and 1), 2.5 (2 and 3), 9 (none: d(9,10)=1
    # is not < 1), 40 (ball of 80) -> precision 3/4, density 5/4.
    # Reals inside fake balls: all but 80 (d(80,40)=40 >= 31) -> recall 6/7.
    # Nearest fake strictly inside own ball: not 10 (1 vs 1) nor 11 (2 vs 1) -> coverage 5/7.
    real = np.array([0, 1, 2, 3, 10, 11, 80], dtype=np.float64)[:, None]
    fake = np.array([0.5, 2.5, 9, 40], dtype=np.float64)[:, None]
    ours = compute_prdc(real, fake, nearest_k=1, chunk_size=3)
    assert ours == {"precision": 3 / 4, "recall": 6 / 7, "density": 5 / 4, "coverage": 5 / 7}
    assert_same(ours, reference(real, fake, 1))


def test_accepts_torch_device_object():
    real, fake = gaussian_sets(30, 60, 50, 8, np.float64)
    assert compute_prdc(real, fake, 3, device=torch.device("cpu")) == compute_prdc(real, fake, 3)


def test_cpu_path_does_not_import_torch():
    # On the CPU the metric is numpy alone: importing torch would cost ~350 MiB of RSS,
    # more than the whole computation at 5k samples. A fresh interpreter shows it.
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from twostage.evaluate.prdc import compute_prdc\n"
        "rng = np.random.default_rng(0)\n"
        "result = compute_prdc(rng.standard_normal((80, 16)), rng.standard_normal((70, 16)))\n"
        "assert set(result) == {'precision', 'recall', 'density', 'coverage'}, result\n"
        "assert 'torch' not in sys.modules, 'compute_prdc on the CPU imported torch'\n"
    )
    run_in_fresh_interpreter(code, timeout=120)


def test_device_product_matches_reference(monkeypatch):
    # The screening products on a torch device (CUDA in use) go through _DeviceProduct;
    # on the CPU device it runs here, so its plumbing is checked without a GPU.
    monkeypatch.setattr(
        prdc_module, "_product_for", lambda device: prdc_module._DeviceProduct(device)
    )
    real, fake = gaussian_sets(32, 150, 140, 32, np.float32)
    assert_same(compute_prdc(real, fake, 3, chunk_size=40), reference(real, fake, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_reference():
    real, fake = gaussian_sets(31, 300, 280, 64, np.float32)
    assert_same(
        compute_prdc(real, fake, 3, chunk_size=100, device="cuda"), reference(real, fake, 3)
    )


GOOD = np.zeros((10, 4))


@pytest.mark.parametrize(
    ("real", "fake", "kwargs", "message"),
    [
        (np.zeros(10), GOOD, {}, "2-D"),
        (GOOD, np.zeros((10, 4, 1)), {}, "2-D"),
        (GOOD, np.zeros((10, 5)), {}, "feature dimensions differ"),
        (np.where(np.eye(10, 4) > 0, np.nan, 0.0), GOOD, {}, "NaN or infinite"),
        (GOOD, np.full((10, 4), np.inf), {}, "NaN or infinite"),
        (np.zeros((3, 4)), GOOD, {"nearest_k": 3}, "need more than nearest_k"),
        (GOOD, np.zeros((5, 4)), {"nearest_k": 5}, "need more than nearest_k"),
        (GOOD, GOOD, {"nearest_k": 0}, "nearest_k must be >= 1"),
        (GOOD, GOOD, {"nearest_k": 2.5}, "nearest_k must be an integer"),
        (GOOD, GOOD, {"chunk_size": 0}, "chunk_size must be >= 1"),
        (np.array([["a"] * 4] * 10), GOOD, {}, "real-valued"),
    ],
)
def test_invalid_inputs_raise(real, fake, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_prdc(real, fake, **kwargs)


# The float32 screening pass: every decision it is unsure of must be redone exactly, so
# forcing it to be unsure of everything (or to keep no spare neighbour candidates) must
# not change a single number; and on ordinary features it must leave little to redo.


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_fallbacks_match_reference(monkeypatch, dtype):
    # A huge slack makes every cross pair undecided and every row's radius spill past
    # its kept candidates, so only the exact float64 paths decide.
    monkeypatch.setattr(prdc_module, "_THRESHOLD_SLACK", 1e3)
    real, fake = gaussian_sets(40, 130, 120, 32, dtype)
    assert_same(compute_prdc(real, fake, 3, chunk_size=50), reference(real, fake, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("tile", "chunk_size"), [(7, 20), (16, 16), (5, 64), (64, 7), (9, 1000)])
def test_tile_edges_match_reference(monkeypatch, tile, chunk_size, dtype):
    # Tiles narrower or wider than the row blocks, dividing them or not: the diagonal
    # squares, the transposed merges and each row's first (fully sorted) part all vary.
    monkeypatch.setattr(prdc_module, "_TILE", tile)
    real, fake = gaussian_sets(45, 110, 95, 16, dtype)
    assert_same(compute_prdc(real, fake, 3, chunk_size=chunk_size), reference(real, fake, 3))


def test_no_spare_candidates_matches_reference(monkeypatch):
    monkeypatch.setattr(prdc_module, "_EXTRA_CANDIDATES", 0)
    real, fake = gaussian_sets(41, 140, 150, 48, np.float64)
    assert_same(compute_prdc(real, fake, 4, chunk_size=60), reference(real, fake, 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_common_offset_matches_reference(dtype):
    # Features far from the origin (like ReLU network activations) make |x|² ≫ d², the
    # worst case for float32 cancellation; centring on the real mean handles it.
    real, fake = gaussian_sets(42, 160, 150, 64, np.float64)
    real, fake = (real + 300).astype(dtype), (fake + 300).astype(dtype)
    assert_same(compute_prdc(real, fake, 3, chunk_size=64), reference(real, fake, 3))


def test_values_beyond_float32_range_match_reference():
    # Squared distances would overflow float32, so the screening runs in float64.
    real, fake = gaussian_sets(43, 100, 90, 16, np.float64)
    real, fake = real * 1e30, fake * 1e30
    assert_same(compute_prdc(real, fake, 3, chunk_size=32), reference(real, fake, 3))


def test_screening_leaves_few_pairs_to_recompute(monkeypatch):
    recomputed = []
    exact_pairs = prdc_module._exact_pair_distances

    def counting(a, ai, b, bj, dtype):
        recomputed.append(len(ai))
        return exact_pairs(a, ai, b, bj, dtype)

    def full_rows(*args):
        raise AssertionError("no row should need the full exact recomputation")

    monkeypatch.setattr(prdc_module, "_exact_pair_distances", counting)
    monkeypatch.setattr(prdc_module, "_exact_kth_smallest", full_rows)
    real, fake = gaussian_sets(44, 600, 500, 256, np.float64)
    assert_same(compute_prdc(real, fake, 3, chunk_size=128), reference(real, fake, 3))
    # One exact distance per radius (its value is needed), plus a few undecided pairs.
    assert sum(recomputed) < 2 * (600 + 500)
