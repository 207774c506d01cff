"""Image-array conventions and grid pictures.

Images travel between stages as uint8 arrays N×H×W×C (C = 1 or 3); networks see
float tensors N×C×H×W in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from twostage.artifacts import atomic_path


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    x = x.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def tiles(images: np.ndarray, side: int) -> np.ndarray:
    """Cut uint8 images N×H×W×C into their side × side tiles, image by image and row by
    row: what the evaluation scores of samples larger than the training images (runs with
    a ``grid``). Images of exactly that size come back as they are."""
    n, h, w, c = images.shape
    if h == w == side:
        return images
    if h % side or w % side:
        raise ValueError(f"{h}×{w} images do not split into {side}×{side} tiles")
    rows, cols = h // side, w // side
    cut = images.reshape(n, rows, side, cols, side, c).transpose(0, 1, 3, 2, 4, 5)
    return cut.reshape(n * rows * cols, side, side, c)


def grid(images: np.ndarray, ncol: int = 8, pad: int = 2) -> np.ndarray:
    """Tile uint8 images N×H×W×C into one H'×W'×C picture with a light border."""
    n, h, w, c = images.shape
    nrow = max(1, -(-n // ncol))
    ncol = min(ncol, n)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 200, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y : y + h, x : x + w] = images[i]
    return canvas


def save_png(path: str | Path, picture: np.ndarray, scale: int = 1) -> None:
    pic = picture[..., 0] if picture.shape[-1] == 1 else picture
    img = Image.fromarray(pic)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_grid(path: str | Path, images: np.ndarray, ncol: int = 8, scale: int = 2) -> None:
    save_png(path, grid(images, ncol=ncol), scale=scale)
