"""Priors and samplers beyond the paper's full chain: autoregressive baseline with a
key/value cache, confidence schedule, inpainting, windowed larger-than-training grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twostage.models.priors.absorbing import AbsorbingDiffusion
from twostage.models.priors.autoregressive import AutoregressivePrior

SPEC = dict(n_layer=2, n_head=2, n_embd=16, dropout=0.0, loss_type="elbo", mask_schedule="random")


def _ar(length: int = 9, k: int = 7) -> AutoregressivePrior:
    torch.manual_seed(0)
    return AutoregressivePrior(SPEC, codebook_size=k, length=length).eval()


def _absorbing(length: int = 16, k: int = 7, **extra) -> AbsorbingDiffusion:
    torch.manual_seed(0)
    return AbsorbingDiffusion({**SPEC, **extra}, codebook_size=k, length=length).eval()


def _count_calls(model) -> list:
    calls: list = []
    model.denoiser.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_autoregressive_nll_is_the_sum_of_per_token_cross_entropies():
    model = _ar()
    z = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(1))
    by_hand = torch.zeros(3)
    with torch.no_grad():
        for i in range(9):  # predict token i from the start token and z_<i, one prefix at a time
            prefix = torch.cat([torch.full((3, 1), model.start_id), z[:, :i]], dim=1)
            logits = model.denoiser(prefix)[:, -1]
            by_hand += F.cross_entropy(logits, z[:, i], reduction="none")
        assert torch.allclose(model.nll(z), by_hand, atol=1e-5)
        bits, nll_bits = model.loss(z)
        assert torch.allclose(bits, by_hand.mean() / (math.log(2) * 9), atol=1e-6)


def test_cached_and_uncached_autoregressive_sampling_agree():
    model = _ar()
    cached = model.sample(5, temperature=0.9, generator=torch.Generator().manual_seed(3))
    plain = model.sample(
        5, temperature=0.9, generator=torch.Generator().manual_seed(3), use_cache=False
    )
    assert torch.equal(cached, plain)


def test_autoregressive_sampler_contract_and_top_k():
    model = _ar()
    calls = _count_calls(model)
    z = model.sample(4, steps=9, top_k=1, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 9 and z.shape == (4, 9)
    assert z.min() >= 0 and z.max() < 7
    # top_k = 1 is greedy: every sample is the same sequence.
    assert (z == z[0]).all()
    with pytest.raises(ValueError, match="exactly 9 steps"):
        model.sample(1, steps=4)


def test_bf16_autocast_keeps_the_logits_in_float32():
    # The blocks' matmuls run in bf16 (the speed-up); the head's output feeds the sampling
    # softmax and stays float32, close to the float32 network's.
    model = _absorbing()
    z = torch.randint(0, 8, (4, 16), generator=torch.Generator().manual_seed(0))
    block_dtypes = []
    model.denoiser.blocks[0].mlp.register_forward_hook(lambda m, i, o: block_dtypes.append(o.dtype))
    with torch.no_grad():
        exact = model.denoiser(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.denoiser(z)
    assert block_dtypes == [torch.float32, torch.bfloat16]
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, exact, atol=0.05) and not torch.equal(mixed, exact)


@pytest.mark.parametrize("sampler", ["random", "even", "cosine", "confidence"])
@pytest.mark.parametrize("steps", [1, 3, 16])
def test_every_absorbing_sampler_fills_all_tokens_in_steps_calls(sampler, steps):
    model = _absorbing()
    calls = _count_calls(model)
    gen = torch.Generator().manual_seed(2)
    z = model.sample(6, steps, sampler=sampler, generator=gen, compact=False)
    assert len(calls) == steps
    assert not (z == model.mask_id).any() and z.max() < 7


@pytest.mark.parametrize("init", [False, True])
@pytest.mark.parametrize("sampler", ["random", "cosine", "confidence"])
@pytest.mark.parametrize("steps", [1, 3, 8, 16])
def test_compact_sampling_returns_the_plain_samplers_tokens_with_less_work(sampler, steps, init):
    """The default (compact) path skips rows whose grid did not change and evaluates the
    all-masked grid once; same generator → the very same tokens as the plain path."""
    model = _absorbing().to("cpu")  # the helpers must not shadow nn.Module internals
    rows: list = []
    model.denoiser.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    start = None
    if init:  # inpainting: half the batch partly known, half entirely masked
        known = torch.randint(0, 7, (40, 16), generator=torch.Generator().manual_seed(4))
        start = torch.full((40, 16), model.mask_id)
        start[:20, :8] = known[:20, :8]
    plain = model.sample(
        40,
        steps,
        sampler=sampler,
        init=start,
        generator=torch.Generator().manual_seed(1),
        compact=False,
    )
    plain_rows = sum(rows)
    rows.clear()
    compact = model.sample(
        40, steps, sampler=sampler, init=start, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(compact, plain)
    assert plain_rows == 40 * steps and len(rows) <= steps
    # Step one evaluates the all-masked grid once; the random sampler skips unchanged rows.
    assert sum(rows) < plain_rows
    if sampler == "random" and steps == 16:
        assert sum(rows) < 0.75 * plain_rows


@pytest.mark.parametrize(
    ("sampler", "steps", "expected"),
    [
        # even: ⌈m/t⌉ of the m still-masked tokens at t = steps, …, 1
        ("even", 4, [4, 4, 4, 4]),
        ("even", 3, [6, 5, 5]),
        ("even", 1, [16]),
        # cosine: still masked after step s of S is ⌊16 cos(π/2 · s/S)⌋ = 14, 11, 6, 0 …
        ("cosine", 4, [2, 3, 5, 6]),
        ("cosine", 5, [1, 3, 3, 5, 4]),  # … and 15, 12, 9, 4, 0
        ("cosine", 1, [16]),
    ],
)
def test_exact_count_samplers_reveal_their_count_each_step(sampler, steps, expected):
    # The count in every row at every step, all filled at the end; the compact path gives
    # the plain path's tokens (the reveal mask is drawn before the network, as in the
    # paper's sampler).
    model = _absorbing()
    revealed: list = []
    real_reveal_tokens = model._reveal_tokens

    def spy(z, reveal, drawn):
        revealed.append(reveal.sum(1).tolist())
        return real_reveal_tokens(z, reveal, drawn)

    model._reveal_tokens = spy
    plain = model.sample(
        5, steps, sampler=sampler, generator=torch.Generator().manual_seed(3), compact=False
    )
    assert revealed == [[n] * 5 for n in expected]
    assert not (plain == model.mask_id).any()
    compact = model.sample(5, steps, sampler=sampler, generator=torch.Generator().manual_seed(3))
    assert torch.equal(compact, plain)


def test_even_sampler_shares_out_a_partly_known_grid():
    model = _absorbing()
    start = torch.full((2, 16), model.mask_id)
    start[0, :9] = 1  # 7 masked: 4 then 3; the other row: 8 then 8
    reveal = model._reveal(start, 2, torch.Generator().manual_seed(0), "even")
    assert reveal.sum(1).tolist() == [4, 8] and not reveal[0, :9].any()


def test_cosine_sampler_follows_each_rows_own_masked_count():
    model = _absorbing()
    start = torch.full((2, 16), model.mask_id)
    start[0, :8] = 1  # 8 masked: ⌊8 cos(π/8)⌋ = 7 stay, so 1 revealed; the other row 16 → 2
    reveal = model._reveal(
        start, 4, torch.Generator().manual_seed(0), "cosine", 4, (start == model.mask_id).sum(1)
    )
    assert reveal.sum(1).tolist() == [1, 2] and not reveal[0, :8].any()


def test_confidence_schedule_reveals_a_cosine_shaped_count():
    model = _absorbing()
    masked_counts = []
    real_step = model._confidence_step

    def spy(z, *args):
        out = real_step(z, *args)
        masked_counts.append(int((out == model.mask_id).sum(1)[0]))
        return out

    model._confidence_step = spy
    model.sample(2, 4, sampler="confidence", generator=torch.Generator().manual_seed(0))
    expected = [math.floor(16 * math.cos(math.pi / 2 * s / 4)) for s in range(1, 5)]
    assert masked_counts == expected  # [14, 11, 6, 0]


@pytest.mark.parametrize("sampler", ["random", "confidence"])
def test_inpainting_never_changes_unmasked_tokens(sampler):
    model = _absorbing()
    known = torch.randint(0, 7, (5, 16), generator=torch.Generator().manual_seed(4))
    region = torch.zeros(16, dtype=torch.bool)
    region[8:] = True
    init = torch.where(region, model.mask_id, known)
    out = model.sample(
        5, int(region.sum()), init=init, sampler=sampler, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(out[:, ~region], known[:, ~region])
    assert not (out == model.mask_id).any()


def test_windowed_sampler_on_the_training_grid_equals_the_ordinary_sampler():
    model = _absorbing()
    large = model.sample_large(
        3, side=4, rows=4, cols=4, steps=16, stride=1, generator=torch.Generator().manual_seed(9)
    )
    plain = model.sample(3, 16, generator=torch.Generator().manual_seed(9))
    assert torch.equal(large.view(3, 16), plain)


def test_windowed_sampler_fills_a_larger_grid():
    model = _absorbing()
    calls = _count_calls(model)
    z = model.sample_large(
        2, side=4, rows=6, cols=7, steps=5, stride=2, generator=torch.Generator().manual_seed(1)
    )
    assert z.shape == (2, 6, 7) and not (z == model.mask_id).any()
    # Window starts: rows 0, 2 (flush with the edge); cols 0, 2, 3 → 6 windows per step.
    assert len(calls) == 5 * 6


@pytest.mark.parametrize("schedule", ["random", "fixed"])
def test_mask_schedules(schedule):
    model = _absorbing(length=16, mask_schedule=schedule)
    z0 = torch.zeros(2000, 16, dtype=torch.long)
    t = torch.full((2000,), 4)
    _, mask = model.q_sample(z0, t, generator=torch.Generator().manual_seed(0))
    counts = mask.sum(1).float()
    if schedule == "fixed":
        assert (counts == 4).all()  # exactly t·L/T = 4 tokens
    else:
        assert abs(counts.mean() - 4) < 0.1 and counts.std() > 0.5  # binomial(16, 1/4)


def test_mlm_loss_is_the_mean_over_masked_tokens(monkeypatch):
    model = _absorbing(length=4, loss_type="mlm")
    z0 = torch.tensor([[1, 2, 3, 4]])
    mask = torch.tensor([[True, True, False, False]])
    monkeypatch.setattr(model, "sample_time", lambda *a, **k: torch.tensor([2]))
    monkeypatch.setattr(model, "q_sample", lambda z, t, g=None: (torch.where(mask, 7, z), mask))
    train, _ = model.loss(z0)
    nll = model.masked_nll(z0, torch.where(mask, 7, z0), mask)
    assert torch.allclose(train, nll / 2 / math.log(2))  # mean over 2 masked tokens, in bits


def test_tiles_cut_each_image_row_by_row():
    from twostage.images import tiles

    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    cut = tiles(image, 2)[..., 0]
    expected = [[[0, 1], [4, 5]], [[2, 3], [6, 7]], [[8, 9], [12, 13]], [[10, 11], [14, 15]]]
    np.testing.assert_array_equal(cut, expected)
    np.testing.assert_array_equal(tiles(image, 4), image)  # the training size: unchanged
    with pytest.raises(ValueError, match="do not split into 3×3 tiles"):
        tiles(image, 3)
