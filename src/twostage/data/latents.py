"""Latent-encoding stage: token grids of both splits from the frozen encoder."""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import save_npy
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.models.autoencoders import load_autoencoder
from twostage.runtime import pick_device


def encode_images(model, images: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        with torch.no_grad():
            out.append(model.encode(to_tensor(images[start : start + batch_size], device)).cpu())
    latents = torch.cat(out).numpy()
    if np.issubdtype(latents.dtype, np.floating):  # continuous autoencoders: latent vectors
        return latents.astype(np.float32)
    # int16 holds any codebook up to 32 767 codes at a quarter of int64's size.
    return latents.astype(np.int16)


def encode(p: Params, ae: str) -> dict:
    device = pick_device(p["device"])
    model = load_autoencoder(paths.autoencoder(ae)["model"], device, p.autoencoder(ae))
    out = paths.latents(ae)
    shapes = {}
    for split in ("train", "val"):
        images, _ = load_split(p.dataset_of_autoencoder(ae), split)
        tokens = encode_images(model, images, device)
        save_npy(out[split], tokens)
        shapes[split] = list(tokens.shape)
    return shapes


def load_tokens(ae: str, split: str) -> torch.Tensor:
    """B × L token sequences (raster order) as int64."""
    grid = np.load(paths.latents(ae)[split])
    return torch.from_numpy(grid.reshape(len(grid), -1).astype(np.int64))
