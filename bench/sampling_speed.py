"""Sampling at equal quality: images/s and FD of each sampler against the full chain.

    python bench/sampling_speed.py --project DIR [--profile FILE] [--n 1000]

Uses the trained models of a finished pipeline run in DIR (``results/``: the absorbing
and autoregressive priors, their autoencoder, the workflow's classifier and its cached
real training features). Every configuration draws ``--n`` images with the same seed,
timed from empty token grid to decoded images (the same span the sample stage times),
and is scored with the pipeline's own Fréchet distance on classifier features against
all real training features.

Reference, measured side by side in the same process: the absorbing prior's full
chain (steps = tokens, the paper's random-order sampler). Each row reports images/s
and FD as ratios to it; the target is ≥ 4× its images/s with FD ≤ 1.05× its FD. The
full chain is also drawn with a second seed: its FD spread is the noise floor a
"within 5 %" claim has to be read against.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from twostage import paths
from twostage.config import load_params
from twostage.evaluate.features import FeatureExtractor
from twostage.evaluate.frechet import frechet_distance_from_features
from twostage.images import to_uint8
from twostage.sample.sampler import load_models


def draw(prior, ae, n: int, batch: int, seed: int, **options) -> tuple[np.ndarray, float]:
    """``n`` decoded uint8 images and the seconds it took."""
    gen = torch.Generator().manual_seed(seed)
    side = ae.token_side
    images, seconds = [], 0.0
    for start in range(0, n, batch):
        b = min(batch, n - start)
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = prior.sample(b, generator=gen, **options)
            decoded = ae.decode(tokens.view(b, side, side))
        seconds += time.perf_counter() - t0
        images.append(to_uint8(decoded))
    return np.concatenate(images), seconds


def configurations(length: int, temperature: float) -> list[tuple[str, str, dict]]:
    """(label, prior kind, sample() options); the first is the reference."""
    full = {"steps": length, "temperature": temperature, "sampler": "random"}
    rows = [("absorbing, random, full chain", "absorbing", full)]
    for divisor in (2, 4, 8):
        if length // divisor >= 1:
            steps = length // divisor
            rows.append(
                (f"absorbing, random, {steps} steps", "absorbing", {**full, "steps": steps})
            )
    for divisor in (2, 4, 8):
        if length // divisor >= 1:
            steps = length // divisor
            options = {**full, "steps": steps, "sampler": "confidence"}
            rows.append((f"absorbing, confidence, {steps} steps", "absorbing", options))
    ar = {"temperature": temperature}
    rows.append(("autoregressive, KV cache", "autoregressive", {**ar, "use_cache": True}))
    rows.append(("autoregressive, no cache", "autoregressive", {**ar, "use_cache": False}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a finished pipeline run")
    parser.add_argument("--profile", action="append", default=[], help="its params profile(s)")
    parser.add_argument("--absorbing", default="absorbing_mnist")
    parser.add_argument("--autoregressive", default="autoregressive_mnist")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.chdir(args.project)
    p = load_params(args.profile)
    _, _, absorbing, ae = load_models(p, args.absorbing)
    _, _, autoregressive, _ = load_models(p, args.autoregressive)
    priors = {"absorbing": absorbing, "autoregressive": autoregressive}
    dataset = p.dataset_of_autoencoder(p.autoencoder_of_prior(args.absorbing))
    extractor = FeatureExtractor(p, dataset, torch.device("cpu"))
    real = np.load(paths.features(dataset, extractor.name)["train"])

    def measure(kind: str, options: dict, seed: int) -> tuple[float, float]:
        # A small untimed draw first: one-time costs (thread pools, lazy kernels) must not
        # land on whichever configuration happens to run first.
        draw(priors[kind], ae, 8, 8, seed, **options)
        images, seconds = draw(priors[kind], ae, args.n, args.batch, seed, **options)
        return args.n / seconds, frechet_distance_from_features(extractor(images), real)

    rows = []
    configs = configurations(absorbing.length, args.temperature)
    for label, kind, options in configs:
        rate, fd = measure(kind, options, args.seed)
        rows.append((label, rate, fd))
    ref_label, ref_rate, ref_fd = rows[0]
    _, noise_fd = measure("absorbing", configs[0][2], args.seed + 1)

    print(
        f"{args.n} images per row, batch {args.batch}, temperature {args.temperature}, "
        f"{absorbing.length} tokens, torch threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"Noise floor: the full chain with another seed has FD {noise_fd:.3f} "
        f"({noise_fd / ref_fd:.3f}× the reference's {ref_fd:.3f}).\n"
    )
    print("| sampler | images/s | speed-up | FD | FD ratio | ≥4× and FD ≤ 1.05× |")
    print("|---|---:|---:|---:|---:|:---:|")
    for label, rate, fd in rows:
        met = "yes" if rate >= 4 * ref_rate and fd <= 1.05 * ref_fd else "no"
        print(
            f"| {label} | {rate:.1f} | {rate / ref_rate:.2f}× | {fd:.3f} | "
            f"{fd / ref_fd:.3f} | {met if label != ref_label else 'reference'} |"
        )


if __name__ == "__main__":
    main()
