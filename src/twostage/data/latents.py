"""Latent-encoding stage: token grids of both splits from the frozen encoder."""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import load_npy, save_npy
from twostage.config import Params
from twostage.data.prepare import check_image_shape, load_split
from twostage.data.sources import DataError
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
    model_path = paths.autoencoder(ae)["model"]
    model = load_autoencoder(model_path, device, p.autoencoder(ae))
    dataset = p.dataset_of_autoencoder(ae)
    # Both splits are read and checked before anything is written.
    splits = {split: load_split(dataset, split)[0] for split in ("train", "val")}
    for split, images in splits.items():
        check_image_shape(images, model.image_shape, paths.data(dataset)[split], model_path)
    out = paths.latents(ae)
    shapes = {}
    for split, images in splits.items():
        tokens = encode_images(model, images, device)
        save_npy(out[split], tokens)
        shapes[split] = list(tokens.shape)
    return shapes


def load_labels(p: Params, ae: str, split: str, count: int) -> torch.Tensor:
    """The class of every token grid of ``split``, as int64 (0..C−1).

    The encoding stage keeps the order of the dataset's split, so the labels the data
    stage saved with the images (MNIST's digits; an image folder's first sub-folder)
    are the labels of the token grids, row for row.
    """
    dataset = p.dataset_of_autoencoder(ae)
    labels = load_split(dataset, split)[1]
    where = paths.data(dataset)[split]
    if len(labels) != count:
        raise DataError(
            f"{where}: {len(labels)} labels for {count} token grids of {paths.latents(ae)[split]}; "
            "rerun encode so the latents match the dataset"
        )
    if len(labels) and labels.min() < 0:
        raise DataError(
            f"{where}: some images have no class (label −1), but a prior on {ae} has "
            "condition: class; put every image of a folder dataset in a class sub-folder, "
            "or set condition: none"
        )
    return torch.from_numpy(labels.astype(np.int64))


def load_tokens(ae: str, split: str) -> torch.Tensor:
    """B × L token sequences (raster order) as int64."""
    grid = load_npy(paths.latents(ae)[split], ndim=(2, 3), kinds="iu")
    return torch.from_numpy(grid.reshape(len(grid), -1).astype(np.int64))
