"""The VQ autoencoder: nearest-code quantisation, straight-through gradients, shapes."""

from __future__ import annotations

import pytest
import torch

from twostage.config import with_defaults
from twostage.models.autoencoders.quantizers import codebook_stats
from twostage.models.autoencoders.vq import VectorQuantizer, VQAutoencoder
from twostage.models.cpu_fast_paths import GroupNorm


def test_quantizer_picks_the_nearest_code():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=16, emb_dim=4, beta=0.25)
    vq.embedding.weight.data = torch.randn(16, 4)
    z = torch.randn(3, 4, 5, 5)
    idx = vq.codes(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, vq.embedding.weight).argmin(1).view(3, 5, 5)
    assert torch.equal(idx, brute)
    z_q, _, _ = vq(z)
    assert torch.allclose(z_q, vq.embedding.weight[idx].permute(0, 3, 1, 2))


def test_straight_through_gradient_and_loss_terms():
    torch.manual_seed(1)
    vq = VectorQuantizer(codebook_size=8, emb_dim=3, beta=0.25)
    vq.embedding.weight.data = torch.randn(8, 3)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    weights = torch.randn(2, 3, 4, 4)
    z_q, loss, idx = vq(z)
    (z_q * weights).sum().backward()
    # The quantiser's gradient is the identity: dL/dz = dL/dz_q.
    assert torch.allclose(z.grad, weights)
    codes = vq.embedding.weight[idx].permute(0, 3, 1, 2)
    expected = (1 + 0.25) * (codes - z.detach()).pow(2).mean()
    assert torch.allclose(loss, expected)


def test_autoencoder_shapes_follow_ch_mult():
    spec = with_defaults(
        "autoencoders",
        dict(
            kind="vq",
            nf=8,
            ch_mult=[1, 2, 2],
            res_blocks=1,
            attn_resolutions=[8],
            codebook_size=32,
            emb_dim=4,
            beta=0.25,
        ),
    )
    model = VQAutoencoder(spec, channels=1, resolution=32)
    x = torch.randn(2, 1, 32, 32)
    recon, _, idx = model(x)
    assert recon.shape == x.shape and idx.shape == (2, 8, 8) and model.token_side == 8
    assert model.decode(model.encode(x)).shape == x.shape


def test_codebook_stats_known_answer():
    stats = codebook_stats(torch.tensor([0, 0, 1, 1]), codebook_size=4)
    assert stats["codebook_used"] == 2
    assert abs(stats["codebook_perplexity"] - 2.0) < 1e-9  # two equally used codes


def test_group_norm_is_torchs_in_float32_and_normalises_bf16_in_float32():
    torch.manual_seed(0)
    ours, plain = GroupNorm(4, 8, eps=1e-6), torch.nn.GroupNorm(4, 8, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(3, 8, 5, 5) * 4 + 3
    assert torch.equal(ours(x), plain(x))
    # A bf16 activation (CPU autocast): statistics in float32, result back in bf16, so it
    # is the float32 result rounded once (bf16 has 8 significant bits).
    x16 = x.bfloat16()
    y = ours(x16)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, plain(x16.float()).bfloat16())


@pytest.mark.parametrize("side", [4, 16, 32])
def test_group_norm_keeps_channels_last_and_matches_torchs(side):
    # A decoded token grid runs channels-last; when sampling, small ones are normalised in
    # the standard layout (faster on CPU) and handed back channels-last, large ones as they are.
    torch.manual_seed(0)
    ours, plain = GroupNorm(8, 8, eps=1e-6), torch.nn.GroupNorm(8, 8, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    plain.load_state_dict(ours.state_dict())
    x = (torch.randn(3, 8, side, side) * 4 + 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for inp in (x, x.bfloat16()):
            y = ours(inp)
            assert y.dtype == inp.dtype
            assert y.is_contiguous(memory_format=torch.channels_last)
            expected = plain(inp.float().contiguous())
            assert torch.allclose(y.float(), expected, atol=2e-2 if inp is not x else 1e-5)
    # Training (gradients on) keeps torch's own path, bit for bit.
    assert torch.equal(ours(x), plain(x))
