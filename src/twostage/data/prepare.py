"""Data-preparation stage: load a source, split deterministically, write arrays + manifest."""

from __future__ import annotations

import numpy as np

from twostage import paths
from twostage.artifacts import load_npz, save_npz, sha256_array, write_json
from twostage.config import Params
from twostage.data.sources import DataError, load_source


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation cut into train/val; the same inputs give the same split."""
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"val_fraction {val_fraction} leaves an empty split of {n} images")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def prepare(p: Params, name: str) -> dict:
    images, labels = load_source(p.dataset(name))
    spec = p.dataset(name)
    if labels is None:
        labels = np.full(len(images), -1, dtype=np.int64)
    train_idx, val_idx = split_indices(len(images), spec["val_fraction"], spec["split_seed"])
    out = paths.data(name)
    arrays = {}
    for split, idx in (("train", train_idx), ("val", val_idx)):
        arrays[split] = (images[idx], labels[idx])
        save_npz(out[split], images=images[idx], labels=labels[idx])
    manifest = {
        "dataset": name,
        "source": spec["source"],
        "path": spec.get("path"),
        "shape": list(images.shape[1:]),
        "num_classes": int(labels.max()) + 1 if labels.min() >= 0 else 0,
        "counts": {split: len(arrays[split][0]) for split in arrays},
        "sha256": {
            f"{split}_{kind}": sha256_array(arr)
            for split, pair in arrays.items()
            for kind, arr in zip(("images", "labels"), pair, strict=True)
        },
    }
    write_json(out["manifest"], manifest)
    return manifest


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = load_npz(
        paths.data(dataset)[split],
        {"images": {"ndim": 4, "kinds": "u"}, "labels": {"ndim": 1, "kinds": "i"}},
    )
    return arrays["images"], arrays["labels"]


def check_image_shape(images: np.ndarray, expected: tuple[int, ...], data: str, model: str) -> None:
    """Refuse images a network was not trained on (size, or grayscale vs RGB) in one line."""
    if tuple(images.shape[1:]) == tuple(expected):
        return

    def describe(shape: tuple[int, ...]) -> str:
        h, w, c = shape
        return f"{h}×{w} {'grayscale' if c == 1 else 'RGB' if c == 3 else f'{c}-channel'}"

    raise DataError(
        f"{data}: images are {describe(tuple(images.shape[1:]))} but {model} was trained on "
        f"{describe(tuple(expected))} images; rerun prepare-data and train-autoencoder "
        "so the dataset and the autoencoder agree"
    )
