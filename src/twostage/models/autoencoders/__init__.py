"""Stage-1 autoencoders and loading them back from their checkpoints."""

from __future__ import annotations

import torch

from twostage.artifacts import check_spec, load_torch
from twostage.models.autoencoders.vq import VQAutoencoder


def load_autoencoder(
    path: str, device: torch.device, expected: dict | None = None
) -> VQAutoencoder:
    """Rebuild a trained autoencoder from ``model.pt`` (architecture stored in it).

    With ``expected`` (the params entry in force), a checkpoint trained with
    other params is refused instead of silently used.
    """
    ckpt = load_torch(path)
    check_spec(path, ckpt["spec"], expected)
    model = VQAutoencoder(ckpt["spec"], ckpt["channels"], ckpt["resolution"])
    model.load_state_dict(ckpt["state_dict"])
    # What the network takes (H, W, C): checked against the data it is given.
    model.image_shape = (ckpt["resolution"], ckpt["resolution"], ckpt["channels"])
    return model.to(device).eval()
