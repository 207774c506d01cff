"""Data-parallel training on several processes (GPUs, or CPU cores with gloo) through torchrun.

``distributed.nproc`` > 1 in ``params/config.yaml`` makes ``twostage train-prior NAME``
start itself again under ``torchrun --standalone --nproc_per_node N`` (so Snakemake
and DVC run one unchanged command). In each process:

* every rank draws the same global batch (same seed) and trains on its own
  contiguous slice of it; DistributedDataParallel averages the gradients, so
  one update equals a single process's update on the whole global batch;
* the loss terms are averaged over ranks before they are logged or checked,
  so every rank takes the same skip/stop decision and the log is the global one;
* every rank validates (same weights, same fixed generator, so the same
  numbers: no rank waits on another), and only rank 0 writes artifacts.

With ``nproc: 1`` (the default) nothing here does anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from twostage.config import Params

# CLI stages whose training loop is data-parallel.
DISTRIBUTED_STAGES = ("train-prior",)


def settings(p: Params) -> dict:
    """``distributed`` of params/config.yaml, defaults filled in."""
    return {"nproc": 1, "backend": "auto", **p.data.get("distributed", {})}


def needs_launch(p: Params, stage: str) -> bool:
    """True in the user's process when the stage should run under torchrun instead."""
    inside_torchrun = "LOCAL_RANK" in os.environ
    return stage in DISTRIBUTED_STAGES and settings(p)["nproc"] > 1 and not inside_torchrun


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
        per_rank = len(batch) // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of ``value`` over all ranks (a detached copy; itself without torchrun)."""
        value = value.detach().clone()
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value


def init(p: Params) -> Context:
    """Join the process group torchrun set up (environment variables), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context()
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


class LossOf(nn.Module):
    """DDP synchronises gradients only for calls through ``forward``: route ``loss`` there."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z0: torch.Tensor, generator: torch.Generator | None = None):
        return self.model.loss(z0, generator=generator)


def loss_module(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """``model.loss`` as a module, wrapped in DistributedDataParallel when in a group."""
    module = LossOf(model)
    if not ctx.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)
