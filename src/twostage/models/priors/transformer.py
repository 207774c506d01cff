"""A small pre-LayerNorm Transformer over token grids (nanoGPT-shaped).

Bidirectional by default (the absorbing-diffusion denoiser); ``causal=True``
gives the autoregressive baseline on the identical architecture, and then a
key/value ``cache`` lets sampling feed one new token per call.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


def float32_under_cpu_autocast(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)``, in float32 when CPU (bf16) autocast is on, else unchanged."""
    if tensors[0].device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return fn(*(t.float() for t in tensors))
    return fn(*tensors)


def bf16_inference_attention(q, k, v, causal: bool) -> torch.Tensor:
    """Attention as two bf16 batched matmuls around a float32 softmax, for sampling.

    At 16 tokens x 32 per head this is ~6x faster than casting q, k, v to float32 for
    the CPU flash kernel and back (0.9 vs 5.6 ms per layer on 250 grids, 1 thread), and
    ~2x faster than the flash kernel in bf16; the softmax, where bf16 would hurt, stays
    float32. Inference only: training keeps the flash kernel (bench/BENCHMARKS.md).
    """
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if causal:  # the n new queries come after the m - n cached positions
        n, m = scores.shape[-2:]
        future = torch.ones(n, m, dtype=torch.bool, device=q.device).triu(m - n + 1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


class SelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, causal: bool):
        super().__init__()
        self.n_head, self.dropout, self.causal = n_head, dropout, causal
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_head, c // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:
            # Keys/values of earlier positions were stored by previous calls; the new
            # queries come after all of them, so attending to everything is causal.
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = self.causal and n > 1
        dropout = self.dropout if self.training else 0.0
        # Under CPU bf16 autocast (cpu_bf16) training attention stays float32: the CPU
        # flash-attention kernel is slower in bf16 (its backward ~12x at 16 tokens, 32 per
        # head; bench/BENCHMARKS.md), while the linear layers gain ~2x. Sampling (no
        # gradients) uses bf16 matmuls with a float32 softmax instead.
        if (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and not torch.is_grad_enabled()
            and not dropout  # bf16_inference_attention has no dropout
        ):
            y = bf16_inference_attention(q, k, v, causal)
        else:
            attention = partial(F.scaled_dot_product_attention, is_causal=causal, dropout_p=dropout)
            y = float32_under_cpu_autocast(attention, q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, causal: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout, causal)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Maps B×L token ids in [0, vocab_in) to B×L×vocab_out logits."""

    def __init__(
        self,
        vocab_in: int,
        vocab_out: int,
        length: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float = 0.0,
        causal: bool = False,
    ):
        super().__init__()
        self.causal = causal
        self.tok_emb = nn.Embedding(vocab_in, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, length, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, causal) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_out, bias=False)
        self.apply(self._init)

    @classmethod
    def for_tokens(cls, spec: dict, codebook_size: int, length: int, causal: bool = False):
        """The prior network over K codes plus one extra input token (mask or start).

        Both priors build it here, so the comparison runs on identical architectures.
        """
        return cls(
            vocab_in=codebook_size + 1,
            vocab_out=codebook_size,
            length=length,
            n_layer=spec["n_layer"],
            n_head=spec["n_head"],
            n_embd=spec["n_embd"],
            dropout=spec["dropout"],
            causal=causal,
        )

    @staticmethod
    def _init(module: nn.Module) -> None:
        # GPT-2 initialisation, as the reference prior uses.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, tokens: torch.Tensor, cache: list[dict] | None = None, offset: int = 0
    ) -> torch.Tensor:
        """Logits for ``tokens`` at positions ``offset`` onwards.

        With a ``cache`` (a list, filled on first use: one dict per block), only
        the new tokens are processed and earlier positions come from the cache.
        """
        if cache is not None and not self.causal:
            raise ValueError("a key/value cache is only valid for a causal Transformer")
        n = tokens.shape[1]
        x = self.drop(self.tok_emb(tokens) + self.pos_emb[:, offset : offset + n])
        if cache is not None and not cache:
            cache.extend({} for _ in self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        # bf16 logits would be off by ~0.4 % of their size, enough to skew the sampling
        # softmax; the head is ~2 % of the FLOPs, so it stays in float32.
        return float32_under_cpu_autocast(self.head, self.ln_f(x))
