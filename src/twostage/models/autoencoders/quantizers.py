"""Stage-1 quantizers (docs/methods.md): nearest-neighbour (eq. 4.1) and Gumbel-softmax.

Both map an encoder output B×D×H×W to (z_q, loss, indices) and share ``codes`` /
``lookup``, so the autoencoder, the latents stage and the samplers need not know
which one was trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from twostage.models.data_parallel import gather_rows, rows_of_global_draw, sum_over_ranks


def codebook_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Used-code count and perplexity exp(H) of the code histogram (collapse shows here)."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).double()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return {"codebook_used": int((counts > 0).sum()), "codebook_perplexity": float(entropy.exp())}


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook (eq. 4.1) with the straight-through estimator.

    With ``reinit_every`` > 0, codes no encoding picked during the last
    ``reinit_every`` training calls are moved onto random encodings of the
    current batch (the codebook-collapse remedy of sec. 4.2). In data-parallel
    training the usage counts and the encodings picked from are the global
    batch's, so every rank revives the same codes with the same vectors.
    """

    def __init__(self, codebook_size: int, emb_dim: int, beta: float, reinit_every: int = 0):
        super().__init__()
        self.codebook_size, self.emb_dim, self.beta = codebook_size, emb_dim, beta
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        self.embedding.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.reinit_every = reinit_every
        if reinit_every > 0:  # only then: plain checkpoints keep their keys
            self.register_buffer("usage", torch.zeros(codebook_size, dtype=torch.long))
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for every position of z (B×D×H×W → B×H×W)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.emb_dim)
        codebook = self.embedding.weight
        # ||z||² − 2 z·c + ||c||², without materialising the B·H·W × K × D difference.
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ codebook.t()
            + codebook.pow(2).sum(1)[None, :]
        )
        b, _, h, w = z.shape
        return dist.argmin(1).view(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for a B×H×W index grid, as B×D×H×W."""
        return self.embedding(indices).permute(0, 3, 1, 2)

    @torch.no_grad()
    def revive_dead_codes(self, z: torch.Tensor) -> int:
        """Move unused codes onto random encodings of ``z``; return how many moved.

        ``z`` is this rank's slice of the batch: the picks are made among the whole
        batch's encodings (rows in rank order), with the random state every rank shares.
        """
        dead = (self.usage == 0).nonzero().flatten()
        if len(dead):
            flat = gather_rows(z.detach()).permute(0, 2, 3, 1).reshape(-1, self.emb_dim)
            picks = torch.randint(0, len(flat), (len(dead),), device=flat.device)
            # Before the lookup of this call, so no autograd graph holds the old rows.
            self.embedding.weight.data[dead] = flat[picks].to(self.embedding.weight.dtype)
        self.usage.zero_()
        return len(dead)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and self.reinit_every > 0:
            self.calls += 1
            if int(self.calls) % self.reinit_every == 0:
                self.revive_dead_codes(z)
        indices = self.codes(z)
        if self.training and self.reinit_every > 0:
            counts = torch.bincount(indices.flatten(), minlength=self.codebook_size)
            self.usage += sum_over_ranks(counts)  # the global batch's usage
        z_q = self.lookup(indices)
        # eq. 4.2: codebook term pulls codes to encodings, commitment term the reverse.
        loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()  # straight-through: decoder gradient flows to the encoder
        return z_q, loss, indices


class GumbelQuantizer(nn.Module):
    """Gumbel-softmax quantizer (the reference's alternative, as in taming's GumbelQuantize).

    A 1×1 conv turns the encoding into logits over the K codes; training mixes
    the code vectors with a Gumbel-softmax sample at ``temperature`` (annealed
    by the trainer) and adds ``kl_weight`` × KL(q ‖ uniform). Evaluation takes the
    arg-max code, so encoding is deterministic.
    """

    def __init__(self, codebook_size: int, emb_dim: int, kl_weight: float):
        super().__init__()
        self.codebook_size, self.emb_dim, self.kl_weight = codebook_size, emb_dim, kl_weight
        self.proj = nn.Conv2d(emb_dim, codebook_size, 1)
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        self.temperature = 1.0  # set every step by the trainer (a function of the step)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z).argmax(1)

    def _gumbel_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """``F.gumbel_softmax(logits, tau, hard=False, dim=1)``, its noise drawn for the global
        batch (this rank's rows kept): a single process's noise, image for image."""

        def exponential(n: int) -> torch.Tensor:
            shape = (n, *logits.shape[1:])
            return torch.empty(shape, dtype=logits.dtype, device=logits.device).exponential_()

        gumbels = -rows_of_global_draw(exponential, len(logits)).log()
        return ((logits + gumbels) / self.temperature).softmax(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.proj(z)  # B×K×H×W
        indices = logits.argmax(1)
        if self.training:
            one_hot = self._gumbel_softmax(logits)
            z_q = torch.einsum("bkhw,kd->bdhw", one_hot, self.embedding.weight)
        else:
            z_q = self.lookup(indices)
        log_q = F.log_softmax(logits, dim=1)
        # KL(q ‖ uniform over K) = Σ q log(q K), averaged over positions.
        kl = (log_q.exp() * (log_q + math.log(self.codebook_size))).sum(1).mean()
        return z_q, self.kl_weight * kl, indices


def gumbel_temperature(step: int, start: float, end: float, anneal_steps: int) -> float:
    """Exponential annealing from ``start`` at step 0 to ``end`` at ``anneal_steps``, then flat."""
    progress = min(1.0, step / max(anneal_steps, 1))
    return start * (end / start) ** progress


def build_quantizer(spec: dict) -> nn.Module:
    """The quantizer named by ``spec['quantizer']`` (params/autoencoders.yaml)."""
    if spec["quantizer"] == "gumbel":
        return GumbelQuantizer(spec["codebook_size"], spec["emb_dim"], spec["gumbel"]["kl_weight"])
    return VectorQuantizer(
        spec["codebook_size"], spec["emb_dim"], spec["beta"], spec["dead_code_reinit_every"]
    )
