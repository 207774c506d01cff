"""Stage-1 autoencoders and loading them back from their checkpoints.

Each kind's model (``kinds.KINDS``) is imported only when an autoencoder of that kind is
built, so a job's code dependencies (codedeps.py) hold only the model of its own
autoencoder's kind.
"""

from __future__ import annotations

import torch

from twostage.artifacts import check_spec, checkpoint_contents, load_torch
from twostage.config import with_defaults
from twostage.kinds import KINDS
from twostage.lazy import resolve

RESOLVES = ("AutoencoderKind.model",)  # for codedeps.py: the kind table entries built here


def load_autoencoder(
    path: str, device: torch.device, expected: dict | None = None
) -> torch.nn.Module:
    """Rebuild a trained autoencoder from ``model.pt`` (architecture stored in it).

    With ``expected`` (the params entry in force), a checkpoint trained with
    other params is refused instead of silently used.
    """
    ckpt = load_torch(path)
    with checkpoint_contents(path):
        # A checkpoint keeps the entry it was trained with; the schema's defaults of that
        # time are the defaults of now, so a key the schema later named is no difference.
        spec = with_defaults("autoencoders", ckpt["spec"])
        check_spec(path, spec, expected)
        model = build_autoencoder(spec, ckpt["channels"], ckpt["resolution"])
        model.load_state_dict(ckpt["state_dict"])
        # What the network takes (H, W, C): checked against the data it is given.
        model.image_shape = (ckpt["resolution"], ckpt["resolution"], ckpt["channels"])
    return model.to(device).eval()


def build_autoencoder(spec: dict, channels: int, resolution: int) -> torch.nn.Module:
    """The stage-1 network of ``spec["kind"]``: vq, or continuous (ae, rae, vae)."""
    return resolve(KINDS[spec["kind"]].model)(spec, channels, resolution)


def is_continuous(spec: dict) -> bool:
    """Whether an autoencoder (or prior) params entry works with latent vectors, not tokens."""
    return KINDS[spec["kind"]].continuous
