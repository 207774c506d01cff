"""Data-parallel training on several processes (GPUs, or CPU cores with gloo) through torchrun.

``distributed.nproc`` > 1 in ``params/config.yaml`` makes ``twostage train-autoencoder NAME``
and ``twostage train-prior NAME`` start themselves again under ``torchrun --standalone
--nproc_per_node N`` (so Snakemake and DVC run one unchanged command). In each process:

* every rank draws the same global batch (same seed) and trains on its own
  contiguous slice of it; DistributedDataParallel averages the gradients, so
  one update equals a single process's update on the whole global batch;
* what looks at the batch as a whole is computed over the global batch
  (models/data_parallel.py: batch-norm statistics, codebook usage and dead-code
  revival, per-image random numbers), so the replicas stay identical, which
  :meth:`Context.check_replicas` verifies at the end;
* the loss terms are averaged over ranks before they are logged or checked,
  so every rank takes the same skip/stop decision and the log is the global one;
* the priors validate on every rank (same weights, same fixed generator: the
  same best-checkpoint choice everywhere); stage 1 validates on rank 0 alone
  (it decides nothing); only rank 0 writes artifacts and the resumable state.

Data-parallel: the VQ autoencoder (the adversarial branch included), the
continuous autoencoders (ae, rae, vae), GLF, and the token priors. The other
continuous priors (flow, gmm, vae_prior) are small fits on cached latents and
run in one process whatever ``nproc`` says. With ``nproc: 1`` (the default)
nothing here does anything.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from twostage.config import Params
from twostage.models.data_parallel import global_batchnorm
from twostage.stages import data_parallel


def settings(p: Params) -> dict:
    """``distributed`` of params/config.yaml (the schema fills its defaults)."""
    return p["distributed"]


def needs_launch(p: Params, stage: str, name: str) -> bool:
    """True in the user's process when the stage should run under torchrun instead."""
    inside_torchrun = "LOCAL_RANK" in os.environ
    return settings(p)["nproc"] > 1 and not inside_torchrun and data_parallel(p, stage, name)


def launch(p: Params, argv: list[str]) -> int:
    """Run ``twostage ARGV`` under torchrun on this node; the exit status of the group."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free local port per job: concurrent jobs on one node do not clash
        f"--nproc_per_node={settings(p)['nproc']}",
        "-m",
        "twostage",
        *argv,
    ]
    print("launching:", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd).returncode


@dataclass
class Context:
    """Where this process stands in the group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: the local rank picks it."""
        if self.enabled and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch drawn identically on every rank.

        Equal slices (params validation checks nproc divides batch_size) make the
        average of the ranks' mean gradients the mean gradient of the global batch.
        """
        if not self.enabled:
            return batch
        if len(batch) % self.world_size:
            # A split smaller than batch_size makes the batch the whole split.
            raise ValueError(
                f"a batch of {len(batch)} does not split evenly over {self.world_size} processes"
            )
        per_rank = len(batch) // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of ``value`` over all ranks (a detached copy; itself without torchrun)."""
        value = value.detach().clone()
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def means(self, **terms: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`mean` of several scalars in one all-reduce."""
        if not self.enabled:
            return {k: v.detach() for k, v in terms.items()}
        values = self.mean(torch.stack([v.detach().float().reshape(()) for v in terms.values()]))
        return dict(zip(terms, values, strict=True))

    def check_replicas(self, *modules: nn.Module, rtol: float = 1e-5) -> None:
        """Stop if the ranks' weights or buffers differ from rank 0's (they must not drift).

        DDP only averages gradients; anything else computed from one rank's slice
        (a codebook update, batch statistics) would make the replicas diverge
        silently, and rank 0 alone writes the checkpoint. One tensor at a time:
        no copy of a whole large model.
        """
        if not self.enabled:
            return
        worst, device = 0.0, torch.device("cpu")
        for tensor in (t for m in modules for t in (*m.parameters(), *m.buffers())):
            if tensor.numel() == 0:
                continue
            mine, device = tensor.detach(), tensor.device
            reference = mine.clone()
            dist.broadcast(reference, src=0)
            diff = float((mine.double() - reference.double()).abs().max())
            scale = max(float(reference.double().abs().max()), 1.0)
            worst = max(worst, diff / scale)
        worst_over_ranks = torch.tensor([worst], dtype=torch.float64, device=device)
        dist.all_reduce(worst_over_ranks, op=dist.ReduceOp.MAX)
        if float(worst_over_ranks) > rtol:
            raise RuntimeError(
                f"data-parallel replicas diverged: the weights of {self.world_size} processes "
                f"differ from rank 0's by up to {float(worst_over_ranks):.3g} (relative)"
            )


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this worker when its torchrun dies (Linux).

    torchrun starts each worker in a session of its own, so a SIGKILL to the job's
    process group (a cancel that cannot be handled) stops torchrun but not the
    workers: they would train on, then clear the resumable state a rerun resumes from.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # torchrun died before the request took effect
        os._exit(1)


def init(p: Params) -> Context:
    """Join the process group torchrun set up (environment variables), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context()
    _die_with_parent()
    backend = settings(p)["backend"]
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    # The threads Snakemake granted the job are shared by its processes.
    torch.set_num_threads(max(1, torch.get_num_threads() // local_world))
    return Context(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def close(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def in_process_group(
    train: Callable[..., dict],
) -> Callable[..., dict]:
    """A trainer ``train(p, name, ctx, **hooks)`` as the stage ``train(p, name, **hooks)``:
    inside the process group torchrun set up (if any), left whatever happens so no rank
    hangs on the others. The data-parallel trainers are defined under it as a decorator.
    The stages pass no hooks; a benchmark may (train/token_prior.py)."""

    @functools.wraps(train)
    def stage(p: Params, name: str, **hooks: Any) -> dict:
        ctx = init(p)
        try:
            return train(p, name, ctx, **hooks)
        finally:
            close(ctx)

    return stage


def _call_loss(model: nn.Module, *args, **kwargs):
    return model.loss(*args, **kwargs)


class LossOf(nn.Module):
    """DDP synchronises gradients only for calls through ``forward``: route a loss there.

    ``forward(*args)`` returns ``loss(model, *args)``; by default ``model.loss(*args)``.
    """

    def __init__(self, model: nn.Module, loss: Callable[..., Any] = _call_loss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *args, **kwargs):
        return self.loss(self.model, *args, **kwargs)


def data_parallel_module(module: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when in a group (itself otherwise).

    Its batch norms become global-batch ones first (models/data_parallel.py). The
    buffers are synchronised once, not broadcast from rank 0 at every call: they
    are computed from the global batch on every rank (a broadcast would hide a
    drift), and :meth:`Context.check_replicas` says if they are not.
    """
    if not ctx.enabled:
        return module
    global_batchnorm(module)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def loss_module(
    model: nn.Module,
    ctx: Context,
    device: torch.device,
    loss: Callable[..., Any] = _call_loss,
) -> nn.Module:
    """``loss(model, ...)`` (default ``model.loss``) as a module, data-parallel when in a group."""
    return data_parallel_module(LossOf(model, loss), ctx, device)
