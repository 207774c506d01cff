"""CPU speed paths the networks call: where PyTorch's CPU kernels are slow for the shapes
and dtypes this project runs, the same result computed another way.

Each path applies only on the CPU and only where its condition says; everywhere else
the network takes PyTorch's standard operation. The measurements behind each choice are
in bench/ (bench/BENCHMARKS.md).

- ``GroupNorm``: bf16 activations are normalised in float32 (the CPU kernel is slow on
  bf16, and the statistics are better taken in float32); small channels-last activations
  without gradients (decoding token grids) are normalised in the standard layout, where
  the CPU kernel is much faster than on channels-last.
- ``attention``: under CPU bf16 autocast, training attention stays float32 (the flash
  kernel's bf16 backward is slow on the CPU), and sampling uses two bf16 matmuls around
  a float32 softmax (``bf16_inference_attention``).
- ``float32_under_cpu_autocast``: a step that must stay float32 under CPU bf16 autocast.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# Up to this many pixels per channel a channels-last activation without gradients is
# normalised in the standard layout; above it the two layout copies cost more than the
# faster kernel saves. Training keeps torch's own path, whose rounding the data-parallel
# tests pin.
_STANDARD_LAYOUT_MAX_PIXELS = 16 * 16


class GroupNorm(nn.GroupNorm):
    """GroupNorm that normalises bf16 CPU activations in float32 (returning bf16), and,
    without gradients, small channels-last CPU activations in the standard layout
    (returning channels-last). Other inputs take the plain path.

    Decoding a token grid runs channels-last (the code lookup is a permuted embedding,
    and the convolutions keep its layout), which is where the second case arises.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        channels_last = (
            not torch.is_grad_enabled()
            and x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.shape[2] * x.shape[3] <= _STANDARD_LAYOUT_MAX_PIXELS
        )
        y = x.contiguous() if channels_last else x
        if y.dtype == torch.bfloat16:
            y = super().forward(y.float()).to(torch.bfloat16)
        else:
            y = super().forward(y)
        return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def float32_under_cpu_autocast(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)``, in float32 when CPU (bf16) autocast is on, else unchanged."""
    if tensors[0].device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return fn(*(t.float() for t in tensors))
    return fn(*tensors)


def bf16_inference_attention(q, k, v, causal: bool) -> torch.Tensor:
    """Attention as two bf16 batched matmuls around a float32 softmax, for sampling.

    Faster on the CPU than the flash kernel in either dtype at these sizes; the softmax,
    where bf16 would hurt, stays float32. Inference only: training keeps the flash kernel.
    """
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if causal:  # the n new queries come after the m - n cached positions
        n, m = scores.shape[-2:]
        future = torch.ones(n, m, dtype=torch.bool, device=q.device).triu(m - n + 1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, dropout: float
) -> torch.Tensor:
    """Scaled dot-product attention of (batch, head, position, dim) tensors.

    Under CPU bf16 autocast: sampling (no gradients, no dropout) takes
    ``bf16_inference_attention``; training takes the flash kernel in float32, while the
    linear layers around it keep bf16. Otherwise PyTorch's kernel as it is.
    """
    if (
        q.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and not torch.is_grad_enabled()
        and not dropout  # bf16_inference_attention has no dropout
    ):
        return bf16_inference_attention(q, k, v, causal)
    flash = partial(F.scaled_dot_product_attention, is_causal=causal, dropout_p=dropout)
    return float32_under_cpu_autocast(flash, q, k, v)
