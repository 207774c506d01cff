"""Stage-1 autoencoders and loading them back from their checkpoints."""

from __future__ import annotations

import torch

from twostage.artifacts import load_torch
from twostage.models.autoencoders.vq import VQAutoencoder


def load_autoencoder(path: str, device: torch.device) -> VQAutoencoder:
    """Rebuild a trained autoencoder from ``model.pt`` (architecture stored in it)."""
    ckpt = load_torch(path)
    model = VQAutoencoder(ckpt["spec"], ckpt["channels"], ckpt["resolution"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
