"""What a model computes over the *global* batch while it trains on one rank's slice of it.

In data-parallel training (train/distributed.py) every rank holds an equal,
contiguous slice of one global batch, and the same weights and random state.
DistributedDataParallel averages the gradients, which is all a model needs when
its loss is a mean over independent images. Anything else that looks at the
batch as a whole must be computed over the global batch, or the run is not the
single-process run and the replicas drift apart:

* batch-norm statistics: :class:`GlobalBatchNorm` (``torch.nn.SyncBatchNorm``
  refuses CPU tensors, and the tests run on CPU with gloo);
* counts and samples of a codebook (dead-code revival): :func:`sum_over_ranks`,
  :func:`gather_rows`;
* per-image random numbers (DiffAugment, Gumbel noise, a VAE's ε):
  :func:`rows_of_global_draw` draws them for the global batch and keeps this
  rank's rows, so every image gets the number a single process would give it.

Without an initialised process group (one process) each helper is the identity,
and draws consume the random stream exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) of the process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rows_of_global_draw(draw: Callable[[int], torch.Tensor], rows: int) -> torch.Tensor:
    """``draw(n)`` for the global batch (n = rows × world size), this rank's ``rows`` of it.

    Every rank draws the same numbers (same random state) and keeps its slice.
    """
    rank, size = world()
    if size == 1:
        return draw(rows)
    return draw(rows * size)[rank * rows : (rank + 1) * rows]


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over the ranks (not differentiable; ``value`` itself in one process)."""
    if world()[1] == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def gather_rows(value: torch.Tensor) -> torch.Tensor:
    """The ranks' ``value`` concatenated along dim 0 in rank order: the global batch's rows."""
    size = world()[1]
    if size == 1:
        return value
    value = value.detach().contiguous()
    parts = [torch.empty_like(value) for _ in range(size)]
    dist.all_gather(parts, value)
    return torch.cat(parts)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient.

    The global statistic s = Σ_r s_r feeds every rank's loss, so ∂(Σ_q L_q)/∂s_r
    = Σ_q ∂L_q/∂s: summing the incoming gradients over ranks is the backward.
    """

    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm that, in training, normalises with the statistics of the global batch.

    The same parameters and buffers as ``nn.BatchNorm1d/2d`` (checkpoints do not
    change); in evaluation, or without a process group, it *is* that batch norm.
    The gradient flows through the global mean and variance (two differentiable
    all-reduces), so with DDP's averaging each update equals a single process's
    on the whole batch. The running statistics are updated from the global ones,
    identically on every rank.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dtype, x = x.dtype, x.float()  # statistics in float32, as the native kernel under AMP
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_count = x.new_full((1,), x.numel() // x.size(1))
        # Two passes (mean, then centred squares) as accurate as the native kernel.
        totals = _SumOverRanks.apply(torch.cat([x.sum(dims), local_count]))
        count = totals[-1].detach()
        if float(count) < 2:
            raise ValueError("expected more than 1 value per channel when training")
        mean = totals[:-1] / count
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply(centred.pow(2).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var.detach() * count / (count - 1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out.to(dtype)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm replaced by a :class:`GlobalBatchNorm` (same tensors)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        new = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, global_batchnorm(child))
    return module
