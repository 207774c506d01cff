"""What the autoencoder trainers validate and show: the reconstruction error of a split,
and the grid of originals above their reconstructions (vq.py, continuous_ae.py, and the
autoencoders trained with a flow in glf.py and vae_flow.py)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from twostage.images import save_grid, to_tensor, to_uint8

Reconstruct = Callable[[torch.Tensor], torch.Tensor]  # a batch in [-1, 1] → its reconstruction


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block; then each module back in the mode it was in."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


@torch.no_grad()
def reconstruction_metrics(
    model: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    reconstruct: Reconstruct | None = None,
) -> dict[str, float]:
    """MSE and PSNR of the uint8 reconstructions (what a user would save) on [0, 1] scale,
    over a whole split, with ``model`` in eval mode; ``reconstruct`` defaults to ``model``."""
    reconstruct = reconstruct or model
    sq_err, count = 0.0, 0
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            recon = to_uint8(reconstruct(to_tensor(batch, device)))
            recon01 = torch.from_numpy(recon).float() / 255
            sq_err += float((recon01 - torch.from_numpy(batch).float() / 255).pow(2).sum())
            count += recon01.numel()
    mse = sq_err / count
    return {"val_mse": mse, "val_psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}


def save_reconstructions(
    path, reconstruct: Reconstruct, images: np.ndarray, device: torch.device
) -> None:
    """32 evenly spaced ``images`` (a split can be ordered by class: mnist5k is) in rows of
    8, each row of originals above their reconstructions."""
    with torch.no_grad():
        originals = images[np.linspace(0, len(images) - 1, 32).astype(int)]
        recon = to_uint8(reconstruct(to_tensor(originals, device)))
    pairs = np.concatenate(
        [np.stack([originals[i : i + 8], recon[i : i + 8]]) for i in range(0, 32, 8)]
    )
    save_grid(path, pairs.reshape(-1, *originals.shape[1:]), ncol=8)
