"""VQ autoencoder (docs/methods.md, "Stage 1"): conv encoder → quantizer → conv decoder.

The architecture follows the VQ-GAN used by Unleashing Transformers: residual
blocks with GroupNorm and swish, one down-sample per channel multiplier after
the first, self-attention at chosen resolutions and in the middle block, a 1×1
projection to the code dimension. Every size comes from params so the same
code builds the paper's 256² model and a tiny CPU one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from twostage.models.autoencoders.quantizers import VectorQuantizer, build_quantizer
from twostage.models.cpu_fast_paths import GroupNorm

__all__ = ["Decoder", "Encoder", "VQAutoencoder", "VectorQuantizer"]


def norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in the paper, fewer when a small model has fewer channels.
    return GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H×W positions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # B × HW × C
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad as in taming's VQ-GAN


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _middle(channels: int) -> nn.Sequential:
    return nn.Sequential(
        ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)
    )


class Encoder(nn.Module):
    def __init__(self, in_ch, nf, ch_mult, res_blocks, attn_resolutions, resolution, emb_dim):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, nf, 3, padding=1)]
        c, res = nf, resolution
        for level, mult in enumerate(ch_mult):
            for _ in range(res_blocks):
                layers.append(ResBlock(c, nf * mult))
                c = nf * mult
                if res in attn_resolutions:
                    layers.append(AttnBlock(c))
            if level != len(ch_mult) - 1:
                layers.append(Downsample(c))
                res //= 2
        layers += [_middle(c), norm(c), nn.SiLU(), nn.Conv2d(c, emb_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, out_ch, nf, ch_mult, res_blocks, attn_resolutions, resolution, emb_dim):
        super().__init__()
        c = nf * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        layers: list[nn.Module] = [nn.Conv2d(emb_dim, c, 3, padding=1), _middle(c)]
        for level in reversed(range(len(ch_mult))):
            for _ in range(res_blocks + 1):
                layers.append(ResBlock(c, nf * ch_mult[level]))
                c = nf * ch_mult[level]
                if res in attn_resolutions:
                    layers.append(AttnBlock(c))
            if level != 0:
                layers.append(Upsample(c))
                res *= 2
        layers += [norm(c), nn.SiLU(), nn.Conv2d(c, out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.last_layer = layers[-1]  # where the VQ-GAN's adaptive weight is measured

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VQAutoencoder(nn.Module):
    def __init__(self, spec: dict, channels: int, resolution: int):
        super().__init__()
        arch = dict(
            nf=spec["nf"],
            ch_mult=tuple(spec["ch_mult"]),
            res_blocks=spec["res_blocks"],
            attn_resolutions=tuple(spec["attn_resolutions"]),
            resolution=resolution,
            emb_dim=spec["emb_dim"],
        )
        self.encoder = Encoder(channels, **arch)
        self.quantizer = build_quantizer(spec)
        self.decoder = Decoder(channels, **arch)
        self.token_side = resolution // 2 ** (len(spec["ch_mult"]) - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_q, codebook_loss, indices = self.quantizer(self.encoder(x))
        return self.decoder(z_q), codebook_loss, indices

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer.codes(self.encoder(x))

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(indices))
