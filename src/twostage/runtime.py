"""Device choice, seeding, thread settings and CPU bf16 autocast shared by every stage."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from functools import cache
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def pick_device(setting: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU; ``cuda``/``cuda:N``/``cpu`` are explicit."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"params/config.yaml: device: {setting!r} requested but no CUDA device")
    return torch.device(setting)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a stage may touch; return a torch generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads() -> None:
    """Use the threads Snakemake granted the job (exported as TWOSTAGE_THREADS), else all cores.

    NumPy's BLAS is capped too: Snakemake exports OMP_NUM_THREADS for its jobs, a plain
    `twostage` call does not, and a BLAS reduction split over another number of threads
    rounds differently, so the same job would not give the same bytes run either way.
    """
    threads = int(os.environ.get("TWOSTAGE_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


# CPU flags of the instructions that multiply bf16 natively. Without them PyTorch
# emulates bf16 matmuls, far slower than float32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AVX-512 BF16 or AMX).

    ``TWOSTAGE_CPU_BF16=0``/``1`` overrides the detection (tests, or a CPU whose
    flags are not listed in /proc/cpuinfo).
    """
    forced = os.environ.get("TWOSTAGE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: stay in float32
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def cpu_description() -> dict:
    """The CPU a job ran on, for its metrics: model name, whether it multiplies bf16
    natively, and oneDNN's instruction cap when one is set (an emulated older CPU)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": name, "native_bf16": cpu_has_native_bf16()}
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        out["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    return out


def cpu_bf16_enabled(device: torch.device, requested: bool) -> bool:
    """Whether to autocast to bf16: requested, on a CPU device, where it is native."""
    return requested and device.type == "cpu" and cpu_has_native_bf16()


def cpu_bf16_autocast(device: torch.device, requested: bool):
    """bf16 autocast on CPUs with native bf16 when requested; otherwise a no-op context.

    On such CPUs bf16 matmuls run at ~2.3x the float32 rate (bench/BENCHMARKS.md);
    results then differ from float32 in the last bits of every layer, so it is opt-in.
    """
    if cpu_bf16_enabled(device, requested):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
