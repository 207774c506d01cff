"""Stage-2 priors over token grids, built by ``kind`` and loaded back from checkpoints."""

from __future__ import annotations

import torch

from twostage.artifacts import check_spec, load_torch
from twostage.models.priors.absorbing import AbsorbingDiffusion
from twostage.models.priors.autoregressive import AutoregressivePrior
from twostage.models.priors.continuous import CONTINUOUS_PRIOR_KINDS, build_continuous_prior

PRIOR_KINDS = {"absorbing": AbsorbingDiffusion, "autoregressive": AutoregressivePrior}


def build_prior(spec: dict, codebook_size: int, length: int) -> torch.nn.Module:
    return PRIOR_KINDS[spec["kind"]](spec, codebook_size, length)


def load_prior(path: str, device: torch.device, expected: dict | None = None) -> torch.nn.Module:
    """Rebuild a trained prior from ``model.pt`` (its spec and sizes are stored in it).

    With ``expected`` (the params entry in force), a checkpoint trained with
    other params is refused instead of silently used.
    """
    ckpt = load_torch(path)
    check_spec(path, ckpt["spec"], expected)
    if ckpt["spec"]["kind"] in CONTINUOUS_PRIOR_KINDS:
        model = build_continuous_prior(ckpt["spec"], ckpt["latent_dim"])
    else:
        model = build_prior(ckpt["spec"], ckpt["codebook_size"], ckpt["length"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
