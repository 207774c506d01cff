"""Sampling stage: draw token grids from the prior, decode them to uint8 images.

A class-conditional prior draws the run's ``classes`` in turn (default every class,
so the sample is balanced), guided by ``guidance`` (models/priors/guidance.py); the
class of every image is saved beside the images, and the grid shows one row per class.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import save_npy, write_json
from twostage.config import ConfigError, Params
from twostage.images import save_grid, to_uint8
from twostage.models.autoencoders import load_autoencoder
from twostage.models.priors import load_prior
from twostage.models.priors.guidance import Guidance
from twostage.runtime import cpu_bf16_autocast, cpu_bf16_enabled, pick_device, seed_everything
from twostage.sample.network_evaluations import counting_evaluations, token_prior_network


def sampler_options(spec: dict) -> dict:
    """Keyword arguments of the prior's ``sample`` that depend on the kind of sampler."""
    if spec["sampler"] == "autoregressive":
        return {"top_k": spec.get("top_k")}
    if spec["sampler"] == "confidence":
        return {"sampler": "confidence", "choice_temperature": spec["choice_temperature"]}
    return {"sampler": spec["sampler"]}


def requested_classes(spec: dict, n: int, num_classes: int, run: str) -> np.ndarray:
    """The class of each of the ``n`` images: the run's ``classes`` (default all) in turn."""
    chosen = spec.get("classes", list(range(num_classes)))
    unknown = [c for c in chosen if not 0 <= c < num_classes]
    if unknown:
        raise ConfigError(
            f"runs.{run}.classes: {unknown} are not classes of prior {spec['prior']!r} "
            f"(it was trained on classes 0..{num_classes - 1})"
        )
    return np.resize(np.asarray(chosen, dtype=np.int64), n)


def class_rows(images: np.ndarray, classes: np.ndarray, per_row: int = 8) -> np.ndarray:
    """The first ``per_row`` images of each class drawn, class by class (a gallery row each)."""
    rows = [images[classes == c][:per_row] for c in np.unique(classes)]
    return np.concatenate(rows)


def load_models(p: Params, prior_name: str):
    """What every sampling stage starts from: device, seeded generator, prior, its autoencoder."""
    device = pick_device(p["device"])
    seed_everything(p["seed"])
    gen = torch.Generator(device=device).manual_seed(p["seed"])
    prior = load_prior(paths.prior(prior_name)["model"], device, p.prior(prior_name))
    ae_name = p.autoencoder_of_prior(prior_name)
    ae = load_autoencoder(paths.autoencoder(ae_name)["model"], device, p.autoencoder(ae_name))
    return device, gen, prior, ae


def sample_run(p: Params, run: str) -> dict:
    spec = p.run(run)
    if spec["sampler"] == "ancestral":  # a continuous prior: no tokens, no steps
        from twostage.sample.continuous import sample_continuous_run

        return sample_continuous_run(p, run)
    device, gen, prior, ae = load_models(p, spec["prior"])
    side = ae.token_side
    # A larger grid (windowed denoising): as many training-size tiles as other runs have
    # samples (config checks that they divide), so the scores are comparable.
    grid = spec.get("grid", side)
    tiles = (grid // side) ** 2
    n = p["evaluation"]["n_samples"] // tiles
    conditional = getattr(prior, "num_classes", 0) > 0
    classes = requested_classes(spec, n, prior.num_classes, run) if conditional else None
    guidance = Guidance(spec["guidance"], spec["guidance_schedule"])

    # Prior and decoder; the logits and the decoder's GroupNorm statistics stay float32.
    bf16 = spec["cpu_bf16"]
    images = []
    sample_time = 0.0
    with (
        counting_evaluations(token_prior_network(prior)) as evaluations,
        tqdm(total=n, desc=f"sampling {run}", unit="img", mininterval=5) as bar,
    ):
        for start in range(0, n, spec["batch_size"]):
            b = min(spec["batch_size"], n - start)
            t0 = time.perf_counter()
            # An unconditional prior's call is what it always was.
            asked = {}
            if conditional:
                batch_classes = torch.from_numpy(classes[start : start + b])
                asked = {"classes": batch_classes, "guidance": guidance}
            with cpu_bf16_autocast(device, bf16):
                if grid > side:
                    tokens = prior.sample_large(
                        b,
                        side,
                        grid,
                        grid,
                        spec["steps"],
                        spec["stride"],
                        spec["temperature"],
                        generator=gen,
                        device=device,
                    )
                else:
                    tokens = prior.sample(
                        b,
                        spec["steps"],
                        spec["temperature"],
                        generator=gen,
                        device=device,
                        **sampler_options(spec),
                        **asked,
                    )
                # The decoder is convolutional: a larger grid decodes to a larger image.
                imgs = ae.decode(tokens.view(b, grid, grid)).float()
            if device.type == "cuda":
                torch.cuda.synchronize()
            sample_time += time.perf_counter() - t0
            images.append(to_uint8(imgs))
            bar.update(b)
    images = np.concatenate(images)
    out = paths.samples(run)
    save_npy(out["images"], images)
    if conditional:
        save_npy(out["classes"], classes)
        save_grid(out["grid"], class_rows(images, classes), ncol=8)
    else:
        save_grid(out["grid"], images[:64], ncol=8)
    stats = {
        "n_samples": n,
        "steps": spec["steps"],
        "temperature": spec["temperature"],
        "sampler": spec["sampler"],
        # Measured: rows the prior's network evaluated / samples (network_evaluations.py).
        "network_calls_per_sample": evaluations.per_sample(n),
        "network_batched_calls": evaluations.calls,
        "samples_per_s": n / sample_time,
        "seconds_per_image": sample_time / n,
        "device": str(device),
        "cpu_bf16": cpu_bf16_enabled(device, bf16),
    }
    if grid > side:  # per image: its network rows and seconds cover all its tiles
        stats.update(token_grid=[grid, grid], tiles_per_image=tiles)
    if conditional:
        stats["guidance"] = guidance.scale
        stats["guidance_schedule"] = guidance.schedule
        stats["classes_drawn"] = len(np.unique(classes))
    write_json(out["stats"], stats)
    return stats
