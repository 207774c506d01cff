"""Absorbing diffusion: the ELBO against a hand computation, and the sampler's contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from twostage.models.priors.absorbing import AbsorbingDiffusion

SPEC = dict(n_layer=1, n_head=2, n_embd=16, dropout=0.0, loss_type="elbo", mask_schedule="random")


class FixedLogits(nn.Module):
    """A denoiser that ignores its input: per-position log-probabilities known in advance."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.log_probs = log_probs  # L × K
        self.calls = 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.log_probs.expand(tokens.shape[0], -1, -1).clone()


def _model(loss_type: str, length: int = 3, k: int = 2) -> tuple[AbsorbingDiffusion, torch.Tensor]:
    model = AbsorbingDiffusion({**SPEC, "loss_type": loss_type}, codebook_size=k, length=length)
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    model.denoiser = FixedLogits(probs.log())
    return model, probs


@pytest.mark.parametrize("loss_type", ["elbo", "reweighted_elbo"])
def test_loss_equals_hand_computation(loss_type, monkeypatch):
    model, probs = _model(loss_type)
    z0 = torch.tensor([[0, 1, 1], [1, 0, 0]])
    t = torch.tensor([1, 2])
    mask = torch.tensor([[False, True, False], [True, False, True]])
    monkeypatch.setattr(model, "sample_time", lambda *a, **k: t)
    monkeypatch.setattr(
        model, "q_sample", lambda z, tt, g=None: (torch.where(mask, model.mask_id, z), mask)
    )
    train, elbo = model.loss(z0)
    # Masked −log p by hand: row 0 masks position 1 (token 1, p=0.1);
    # row 1 masks positions 0 (token 1, p=0.5) and 2 (token 0, p=0.2).
    nll = torch.tensor([-math.log(0.1), -math.log(0.5) - math.log(0.2)])
    T, bits = 3, math.log(2) * 3
    expected_elbo = (T * nll / t.float()).mean() / bits
    weight = (T - t + 1).float() / T
    expected_train = expected_elbo if loss_type == "elbo" else (weight * nll).mean() / bits
    assert torch.allclose(elbo, expected_elbo)
    assert torch.allclose(train, expected_train)


def test_elbo_is_unbiased_for_an_input_independent_denoiser():
    # With p(z0_i | z_t) independent of z_t the ELBO is exact:
    # Σ_t (1/t)·(t/T)·Σ_i c_i = Σ_i c_i, the factorised NLL.
    model, probs = _model("elbo")
    z0 = torch.tensor([[0, 0, 1]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    _, elbo = model.loss(z0, generator=gen)
    exact = -(math.log(0.5) + math.log(0.9) + math.log(0.8)) / (3 * math.log(2))
    assert abs(float(elbo) - exact) < 0.02 * exact


@pytest.mark.parametrize("steps", [1, 4, 64])
def test_sampler_calls_network_steps_times_and_leaves_no_mask(steps):
    torch.manual_seed(0)
    model = AbsorbingDiffusion(SPEC, codebook_size=10, length=64).eval()
    calls = []
    model.denoiser.register_forward_hook(lambda *args: calls.append(1))
    gen = torch.Generator().manual_seed(3)
    z = model.sample(5, steps, temperature=1.0, generator=gen, compact=False)
    assert len(calls) == steps
    assert z.shape == (5, 64)
    assert not (z == model.mask_id).any()
    assert z.min() >= 0 and z.max() < 10


def test_sampler_is_reproducible_with_a_seed():
    model = AbsorbingDiffusion(SPEC, codebook_size=10, length=16).eval()
    a = model.sample(3, 8, generator=torch.Generator().manual_seed(7))
    b = model.sample(3, 8, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_low_temperature_follows_the_mode():
    model, probs = _model("elbo")
    z = model.sample(200, 3, temperature=0.01, generator=torch.Generator().manual_seed(0))
    # Position 1 has p(0)=0.9, position 2 has p(1)=0.8: at τ→0 always the mode.
    assert (z[:, 1] == 0).all() and (z[:, 2] == 1).all()


def test_token_draws_follow_the_probabilities():
    """The CDF-inversion draw of revealed tokens has the softmax's distribution (and zero-
    probability tokens are never drawn): 4σ bounds on 200 000 draws per position."""
    probs = torch.tensor([[[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4]]])
    n = 200_000
    batch = probs.expand(n, -1, -1)
    reveal = torch.ones(n, 3, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    drawn = AbsorbingDiffusion._draw_at(batch, reveal, gen).view(n, 3)
    for pos in range(3):
        freq = torch.bincount(drawn[:, pos], minlength=4).double() / n
        p = probs[0, pos].double()
        assert torch.all(freq[p == 0] == 0)
        sigma = (p * (1 - p) / n).sqrt()
        assert torch.all((freq - p).abs() <= 4 * sigma + 1e-12), (pos, freq, p)
