"""Stage-2 priors, built by ``kind`` and loaded back from checkpoints.

Each kind's model (``kinds.KINDS``) is imported only when a prior of that kind is built,
so a job's code dependencies (codedeps.py) hold only the model of its own prior's kind.
"""

from __future__ import annotations

import torch

from twostage.artifacts import check_spec, checkpoint_contents, load_torch
from twostage.config import with_defaults
from twostage.kinds import KINDS
from twostage.lazy import resolve

RESOLVES = ("PriorKind.model",)  # for codedeps.py: the kind table entries built here


def build_prior(
    spec: dict, codebook_size: int, length: int, num_classes: int = 0
) -> torch.nn.Module:
    """A prior over token grids (absorbing, autoregressive); class-conditional when
    ``num_classes`` > 0 (params ``condition: class``)."""
    model = resolve(KINDS[spec["kind"]].model)
    if num_classes:
        return model(spec, codebook_size, length, num_classes=num_classes)
    return model(spec, codebook_size, length)


def load_prior(path: str, device: torch.device, expected: dict | None = None) -> torch.nn.Module:
    """Rebuild a trained prior from ``model.pt`` (its spec and sizes are stored in it).

    With ``expected`` (the params entry in force), a checkpoint trained with
    other params is refused instead of silently used.
    """
    ckpt = load_torch(path)
    with checkpoint_contents(path):
        spec = with_defaults("priors", ckpt["spec"])  # as load_autoencoder
        check_spec(path, spec, expected)
        if KINDS[spec["kind"]].continuous:
            classes = ckpt.get("num_classes", 0)  # a class-conditional gmm only
            extra = {"num_classes": classes} if classes else {}
            model = resolve(KINDS[spec["kind"]].model)(spec, ckpt["latent_dim"], **extra)
        else:
            model = build_prior(
                spec, ckpt["codebook_size"], ckpt["length"], ckpt.get("num_classes", 0)
            )
        model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
