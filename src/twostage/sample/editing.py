"""What an absorbing prior can do beyond sampling (docs/methods.md, "Reverse samplers").

* Inpainting: mask the tokens under a region of real images, set t to the
  number of masked tokens and continue the reverse process; tokens outside the
  region are never changed.
* Larger-than-training samples (eq. 4.11): windowed, probability-averaged
  denoising of a token grid bigger than the one the prior was trained on.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

from twostage import paths
from twostage.artifacts import write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.data.sources import DataError
from twostage.images import save_grid, to_tensor, to_uint8
from twostage.sample.sampler import load_models


def pixel_mask(spec: dict, resolution: int) -> np.ndarray:
    """Boolean resolution × resolution mask: the box of params, or a mask image (white = fill)."""
    if "mask_image" in spec:
        try:
            with Image.open(spec["mask_image"]) as img:
                mask = np.asarray(img.convert("L")) > 127
        except OSError as exc:
            raise DataError(f"{spec['mask_image']}: cannot read mask image ({exc})") from None
        if mask.shape != (resolution, resolution):
            raise DataError(
                f"{spec['mask_image']}: mask is {mask.shape[0]}×{mask.shape[1]}, "
                f"images are {resolution}×{resolution}"
            )
        return mask
    top, left, height, width = spec["box"]
    mask = np.zeros((resolution, resolution), dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def token_mask(mask: np.ndarray, side: int) -> torch.Tensor:
    """A token is masked when any pixel of its patch is: side × side booleans."""
    f = mask.shape[0] // side
    return torch.from_numpy(mask.reshape(side, f, side, f).any(axis=(1, 3)))


def inpaint(p: Params, prior_name: str) -> dict:
    spec = p["evaluation"]["inpainting"]
    device, gen, prior, ae = load_models(p, prior_name)
    images, _ = load_split(p.dataset_of_autoencoder(p.autoencoder_of_prior(prior_name)), "val")
    images = images[np.linspace(0, len(images) - 1, spec["n_images"]).astype(int)]
    n, side = len(images), ae.token_side

    mask_px = pixel_mask(spec, images.shape[1])
    mask_tok = token_mask(mask_px, side).to(device)
    tokens = ae.encode(to_tensor(images, device))
    init = torch.where(mask_tok, prior.mask_id, tokens).view(n, -1)
    masked = int(mask_tok.sum())
    completed = prior.sample(
        n, masked, spec["temperature"], generator=gen, device=device, init=init
    )
    # The reverse process only ever fills masked positions; make that a checked fact.
    keep = ~mask_tok.view(-1)
    if not torch.equal(completed[:, keep], tokens.view(n, -1)[:, keep]):
        raise AssertionError("inpainting changed tokens outside the masked region")
    results = to_uint8(ae.decode(completed.view(n, side, side)))
    shown = images.copy()
    shown[:, mask_px] = 128  # the masked region, greyed
    rows = [np.stack([images[i], shown[i], results[i]]) for i in range(n)]
    save_grid(paths.inpainting(prior_name)["grid"], np.concatenate(rows), ncol=6)
    stats = {"n_images": n, "masked_tokens": masked, "tokens": side * side, "network_calls": masked}
    write_json(paths.inpainting(prior_name)["stats"], stats)
    return stats


def large_samples(p: Params, prior_name: str) -> dict:
    spec = p["evaluation"]["large_samples"]
    device, gen, prior, ae = load_models(p, prior_name)
    start = time.perf_counter()
    tokens = prior.sample_large(
        spec["n"],
        ae.token_side,
        spec["rows"],
        spec["cols"],
        spec["steps"],
        spec["stride"],
        spec["temperature"],
        generator=gen,
        device=device,
    )
    images = to_uint8(ae.decode(tokens))  # the decoder is convolutional: any grid size works
    seconds = time.perf_counter() - start
    save_grid(paths.large_samples(prior_name)["grid"], images, ncol=4)
    stats = {
        "n": spec["n"],
        "token_grid": [spec["rows"], spec["cols"]],
        "image_shape": list(images.shape[1:]),
        "seconds_per_image": seconds / spec["n"],
    }
    write_json(paths.large_samples(prior_name)["stats"], stats)
    return stats
