"""A small pre-LayerNorm Transformer over token grids (nanoGPT-shaped).

Bidirectional by default (the absorbing-diffusion denoiser); ``causal=True``
gives the autoregressive baseline on the identical architecture, and then a
key/value ``cache`` lets sampling feed one new token per call. With ``num_classes``
> 0 a learned class embedding is added at every position (index ``num_classes`` is
"no class", the unconditional input of classifier-free guidance).
"""

from __future__ import annotations

import torch
from torch import nn

from twostage.models.cpu_fast_paths import attention, float32_under_cpu_autocast


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
        y = attention(q, k, v, causal, dropout)  # CPU bf16 paths: models/cpu_fast_paths.py
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
        num_classes: int = 0,
    ):
        super().__init__()
        self.causal = causal
        self.num_classes = num_classes
        self.tok_emb = nn.Embedding(vocab_in, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, length, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, causal) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_out, bias=False)
        if num_classes:  # created last and only when conditional: an unconditional
            # network keeps its parameters, their order and their random initial values
            self.class_emb = nn.Embedding(num_classes + 1, n_embd)
        self.apply(self._init)

    @classmethod
    def for_tokens(
        cls, spec: dict, codebook_size: int, length: int, causal: bool = False, num_classes: int = 0
    ):
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
            num_classes=num_classes,
        )

    @staticmethod
    def _init(module: nn.Module) -> None:
        # GPT-2 initialisation, as the reference prior uses.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        tokens: torch.Tensor,
        cache: list[dict] | None = None,
        offset: int = 0,
        classes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for ``tokens`` at positions ``offset`` onwards.

        With a ``cache`` (a list, filled on first use: one dict per block), only
        the new tokens are processed and earlier positions come from the cache.
        ``classes`` (B, in 0..num_classes, the last = no class) is required exactly when
        the network is conditional.
        """
        if cache is not None and not self.causal:
            raise ValueError("a key/value cache is only valid for a causal Transformer")
        if (classes is None) != (self.num_classes == 0):
            raise ValueError(
                f"a network with {self.num_classes} classes was called "
                f"{'without' if classes is None else 'with'} classes"
            )
        n = tokens.shape[1]
        x = self.tok_emb(tokens) + self.pos_emb[:, offset : offset + n]
        if classes is not None:
            x = x + self.class_emb(classes)[:, None]
        x = self.drop(x)
        if cache is not None and not cache:
            cache.extend({} for _ in self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        # bf16 logits would be off enough to skew the sampling softmax, and the head is a
        # small part of the work, so it stays in float32.
        return float32_under_cpu_autocast(self.head, self.ln_f(x))
