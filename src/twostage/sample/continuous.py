"""Ancestral sampling of continuous priors: z ~ p(z), decoded once.

Writes the same images.npy / grid.png / stats.json as the token samplers, so
evaluation and the report treat every prior alike. ``temperature`` scales the
prior's base noise (the flow's N(0, I), each mixture component's covariance). A
class-conditional gmm draws the run's ``classes`` in turn, saved as the token samplers do.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import check_spec, checkpoint_contents, load_torch, save_npy, write_json
from twostage.config import Params, with_defaults
from twostage.images import save_grid, to_uint8
from twostage.kinds import JOINT_PRIORS
from twostage.models.autoencoders import build_autoencoder, load_autoencoder
from twostage.models.priors import load_prior
from twostage.runtime import pick_device, seed_everything
from twostage.sample.sampler import class_rows, requested_classes


def load_decoder(p: Params, prior_name: str, device: torch.device) -> torch.nn.Module:
    """The autoencoder whose decoder turns this prior's latents into images.

    A GLF or VAE+flow prior carries its own, jointly trained one; other priors
    use their ``autoencoder`` entry's trained model.
    """
    ae = p.autoencoder_of_prior(prior_name)
    if p.prior(prior_name)["kind"] in JOINT_PRIORS:
        path = paths.prior(prior_name)["model"]
        ckpt = load_torch(path)
        with checkpoint_contents(path):
            saved = ckpt["autoencoder"]
            spec = with_defaults("autoencoders", saved["spec"])  # as load_autoencoder
            check_spec(path, spec, p.autoencoder(ae))
            model = build_autoencoder(spec, saved["channels"], saved["resolution"])
            model.load_state_dict(saved["state_dict"])
        return model.to(device).eval()
    return load_autoencoder(paths.autoencoder(ae)["model"], device, p.autoencoder(ae))


@torch.no_grad()
def decode_prior_samples(
    prior,
    decoder,
    n: int,
    batch_size: int,
    temperature: float,
    generator,
    desc: str = "sampling",
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """n uint8 images and the seconds spent (sampling + decoding); ``classes``: the class
    of each image, for a class-conditional prior."""
    images, seconds = [], 0.0
    with tqdm(total=n, desc=desc, unit="img", mininterval=5) as bar:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            t0 = time.perf_counter()
            asked = {}
            if classes is not None:
                asked = {"classes": torch.from_numpy(classes[start : start + b])}
            imgs = decoder.decode(prior.sample(b, temperature, generator=generator, **asked))
            seconds += time.perf_counter() - t0
            images.append(to_uint8(imgs))
            bar.update(b)
    return np.concatenate(images), seconds


def sample_continuous_run(p: Params, run: str) -> dict:
    spec = p.run(run)
    device = pick_device(p["device"])
    seed_everything(p["seed"])
    gen = torch.Generator(device=device).manual_seed(p["seed"])
    prior = load_prior(paths.prior(spec["prior"])["model"], device, p.prior(spec["prior"]))
    decoder = load_decoder(p, spec["prior"], device)
    n = p["evaluation"]["n_samples"]
    classes = None
    if getattr(prior, "num_classes", 0):
        classes = requested_classes(spec, n, prior.num_classes, run)
    images, seconds = decode_prior_samples(
        prior, decoder, n, spec["batch_size"], spec["temperature"], gen, f"sampling {run}", classes
    )
    out = paths.samples(run)
    save_npy(out["images"], images)
    if classes is not None:
        save_npy(out["classes"], classes)
        save_grid(out["grid"], class_rows(images, classes), ncol=8)
    else:
        save_grid(out["grid"], images[:64], ncol=8)
    stats = {
        "n_samples": n,
        "steps": 1,  # one draw from the prior, one decoder pass
        "temperature": spec["temperature"],
        "sampler": spec["sampler"],
        "network_calls_per_sample": 1,
        "samples_per_s": n / seconds,
        "seconds_per_image": seconds / n,
        "device": str(device),
    }
    write_json(out["stats"], stats)
    return stats
