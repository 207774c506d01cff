"""Device choice, seeding and thread settings shared by every stage."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


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
    """Use the threads Snakemake granted the job (exported as TWOSTAGE_THREADS), else all cores."""
    threads = int(os.environ.get("TWOSTAGE_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(threads)
