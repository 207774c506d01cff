"""Sampling at equal quality: images/s and FD of each sampler against the full chain.

    python bench/sampling_speed.py --project DIR [--profile FILE] [--n 1000] [--rounds 3]

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

Timing is interleaved: every round draws every configuration once (same seed, so the
same images), and images/s is the median over rounds, so a burst of load from other
jobs hits all rows alike; the load average is recorded per row. The prior's and the
decoder's shares of the time are timed separately. Absorbing rows use the default
``compact`` sampler (same tokens as the plain path, no repeated network work) unless
marked "plain".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from twostage.config import load_params
from twostage.evaluate import cache
from twostage.evaluate.features import primary_extractor
from twostage.evaluate.frechet import frechet_distance_from_features
from twostage.evaluate.prdc import compute_prdc
from twostage.evaluate.protocol import real_subset
from twostage.images import to_uint8
from twostage.runtime import cpu_bf16_autocast, cpu_has_native_bf16
from twostage.sample.sampler import load_models

CPU = torch.device("cpu")


def draw(prior, ae, n: int, batch: int, seed: int, **options):
    """``n`` decoded uint8 images, total seconds, and the seconds spent in the prior.

    ``bf16=True`` runs the prior (not the decoder) in bf16 autocast, as the sample
    stage's ``cpu_bf16`` does.
    """
    bf16 = options.pop("bf16", False)
    decoder_bf16 = options.pop("decoder_bf16", False)
    gen = torch.Generator().manual_seed(seed)
    side = ae.token_side
    images, seconds, prior_seconds = [], 0.0, 0.0
    for start in range(0, n, batch):
        b = min(batch, n - start)
        t0 = time.perf_counter()
        with torch.no_grad():
            with cpu_bf16_autocast(CPU, bf16):
                tokens = prior.sample(b, generator=gen, **options)
            t1 = time.perf_counter()
            with cpu_bf16_autocast(CPU, decoder_bf16):
                decoded = ae.decode(tokens.view(b, side, side)).float()
        t2 = time.perf_counter()
        seconds += t2 - t0
        prior_seconds += t1 - t0
        images.append(to_uint8(decoded))
    return np.concatenate(images), seconds, prior_seconds


def configurations(
    length: int,
    temperature: float,
    random_steps: list[int] | None = None,
    bf16_steps: list[int] | None = None,
    even_steps: list[int] | None = None,
    temperatures: list[float] | None = None,
    cosine_steps: list[int] | None = None,
) -> list[tuple[str, str, dict]]:
    """(label, prior kind, sample() options); the first is the reference."""
    full = {"steps": length, "temperature": temperature, "sampler": "random"}
    rows = [("absorbing, random, full chain, plain", "absorbing", {**full, "compact": False})]
    rows.append(("absorbing, random, full chain", "absorbing", full))
    if random_steps is None:
        random_steps = [length // d for d in (2, 4, 8) if length // d >= 1]
    for steps in random_steps:
        rows.append((f"absorbing, random, {steps} steps", "absorbing", {**full, "steps": steps}))
    for divisor in (2, 4, 8):
        if length // divisor >= 1:
            steps = length // divisor
            options = {**full, "steps": steps, "sampler": "confidence"}
            rows.append((f"absorbing, confidence, {steps} steps", "absorbing", options))
    for steps in bf16_steps or []:
        label = "full chain" if steps == length else f"{steps} steps"
        options = {**full, "steps": steps, "bf16": True}
        rows.append((f"absorbing, random, {label}, bf16", "absorbing", options))
    for steps in bf16_steps or []:
        label = "full chain" if steps == length else f"{steps} steps"
        options = {**full, "steps": steps, "bf16": True, "decoder_bf16": True}
        rows.append((f"absorbing, random, {label}, bf16 + bf16 decoder", "absorbing", options))
    exact_counts = [("even", s) for s in even_steps or []]
    exact_counts += [("cosine", s) for s in cosine_steps or []]
    for sampler, steps in exact_counts:
        options = {**full, "steps": steps, "sampler": sampler}
        rows.append((f"absorbing, {sampler}, {steps} steps", "absorbing", options))
        if bf16_steps:  # what the sampler with `cpu_bf16: true` does
            options = {**options, "bf16": True, "decoder_bf16": True}
            label = f"absorbing, {sampler}, {steps} steps, bf16 + bf16 decoder"
            rows.append((label, "absorbing", options))
    # Another temperature changes the distribution, not the cost: the full chain at that
    # temperature is drawn too, so each fast row can be read against the full chain at
    # its own temperature as well as against the reference's.
    for tau in temperatures or []:
        options = {**full, "temperature": tau}
        rows.append((f"absorbing, random, full chain, τ {tau}", "absorbing", options))
        for sampler, steps in exact_counts:
            options = {**full, "temperature": tau, "steps": steps, "sampler": sampler}
            if bf16_steps:
                options = {**options, "bf16": True, "decoder_bf16": True}
            label = f"absorbing, {sampler}, {steps} steps, τ {tau}" + (
                ", bf16 + bf16 decoder" if bf16_steps else ""
            )
            rows.append((label, "absorbing", options))
    ar = {"temperature": temperature}
    rows.append(("autoregressive, KV cache", "autoregressive", {**ar, "use_cache": True}))
    if bf16_steps:
        options = {**ar, "use_cache": True, "bf16": True}
        rows.append(("autoregressive, KV cache, bf16", "autoregressive", options))
    rows.append(("autoregressive, no cache", "autoregressive", {**ar, "use_cache": False}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a finished pipeline run")
    parser.add_argument("--profile", action="append", default=[], help="its params profile(s)")
    parser.add_argument("--absorbing", default="absorbing_mnist")
    parser.add_argument(
        "--autoregressive", default="autoregressive_mnist", help="'' = no autoregressive rows"
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--noise-seeds", type=int, default=2, help="extra seeds of the reference")
    parser.add_argument("--random-steps", default="", help="e.g. 8,6,4 (default: T/2, T/4, T/8)")
    parser.add_argument(
        "--bf16-steps", default="", help="e.g. 16,8,4: rows with the prior in bf16 autocast"
    )
    parser.add_argument(
        "--even-steps", default="", help="e.g. 4,3: rows of the even sampler (and in bf16)"
    )
    parser.add_argument(
        "--cosine-steps", default="", help="e.g. 5,4: rows of the cosine-count sampler (and bf16)"
    )
    parser.add_argument(
        "--temperatures",
        default="",
        help="e.g. 0.7,1.0: the full chain and the --even/--cosine-steps rows at those τ",
    )
    parser.add_argument("--skip", default="", help="skip rows whose label contains any of a,b")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    json_out = args.json.resolve() if args.json else None
    os.chdir(args.project)
    p = load_params(args.profile)
    _, _, absorbing, ae = load_models(p, args.absorbing)
    priors = {"absorbing": absorbing}
    if args.autoregressive:
        priors["autoregressive"] = load_models(p, args.autoregressive)[2]
    dataset = p.dataset_of_autoencoder(p.autoencoder_of_prior(args.absorbing))
    extractor = primary_extractor(p, dataset, torch.device("cpu"))
    real = cache.load_train_features(p, dataset, extractor)

    nearest_k = p["evaluation"]["nearest_k"]

    def quality(images: np.ndarray) -> tuple[float, dict]:
        """FD against all real training features, PRDC against an equal-sized subset."""
        features = extractor(images)
        prdc = compute_prdc(real_subset(real, len(features), args.seed), features, nearest_k)
        return frechet_distance_from_features(features, real), prdc

    random_steps = [int(x) for x in args.random_steps.split(",")] if args.random_steps else None
    bf16_steps = [int(x) for x in args.bf16_steps.split(",")] if args.bf16_steps else None
    if bf16_steps and not cpu_has_native_bf16():
        parser.error("--bf16-steps: this CPU has no native bf16 (emulated bf16 is slower)")
    even_steps = [int(x) for x in args.even_steps.split(",")] if args.even_steps else None
    cosine_steps = [int(x) for x in args.cosine_steps.split(",")] if args.cosine_steps else None
    temperatures = [float(x) for x in args.temperatures.split(",")] if args.temperatures else None
    configs = configurations(
        absorbing.length,
        args.temperature,
        random_steps,
        bf16_steps,
        even_steps,
        temperatures,
        cosine_steps,
    )
    skip = [x for x in args.skip.split(",") if x]
    configs = [c for c in configs if not any(x in c[0] for x in skip) and c[1] in priors]
    # A small untimed draw first: one-time costs (thread pools, lazy kernels) must not
    # land on whichever configuration happens to run first.
    for _, kind, options in configs:
        draw(priors[kind], ae, 8, 8, args.seed, **options)
    times: dict[str, list] = {label: [] for label, _, _ in configs}
    loads: dict[str, list] = {label: [] for label, _, _ in configs}
    fds: dict[str, float] = {}
    prdcs: dict[str, dict] = {}
    for r in range(args.rounds):
        for label, kind, options in configs:
            loads[label].append(os.getloadavg()[0])
            images, seconds, prior_seconds = draw(
                priors[kind], ae, args.n, args.batch, args.seed, **options
            )
            times[label].append((seconds, prior_seconds))
            if r == 0:
                fds[label], prdcs[label] = quality(images)
    ref_label, _, ref_options = configs[0]
    # Compact sampling returns the plain path's very tokens, only sooner.
    noise_options = {**ref_options, "compact": True}
    noise = [
        quality(draw(absorbing, ae, args.n, args.batch, args.seed + 1 + i, **noise_options)[0])[0]
        for i in range(args.noise_seeds)
    ]

    def prdc_cell(m: dict) -> str:
        return " / ".join(f"{m[key]:.3f}" for key in ("precision", "recall", "density", "coverage"))

    def median(values):
        return float(np.median(values))

    ref_rate = args.n / median([s for s, _ in times[ref_label]])
    ref_fd = fds[ref_label]
    print(
        f"{args.n} images per row, batch {args.batch}, temperature {args.temperature}, "
        f"{absorbing.length} tokens, torch threads {torch.get_num_threads()}, "
        f"{args.rounds} interleaved rounds (median), torch {torch.__version__}, "
        f"load average at the end {os.getloadavg()[0]:.1f}\n"
    )
    spread = ", ".join(f"{x:.3f} ({x / ref_fd:.3f}×)" for x in noise)
    print(
        f"Noise floor: the reference with other seeds has FD {spread}; seed {args.seed}: "
        f"{ref_fd:.3f}.\n"
    )
    print(
        "| sampler | images/s | speed-up | prior share | FD | FD ratio | P / R / D / C | load | "
        "≥4× and FD ≤ 1.05× |"
    )
    print("|---|---:|---:|---:|---:|---:|:---|---:|:---:|")
    rows = []
    for label, kind, _ in configs:
        seconds = median([s for s, _ in times[label]])
        share = median([q / s for s, q in times[label]])
        rate = args.n / seconds
        met = "yes" if rate >= 4 * ref_rate and fds[label] <= 1.05 * ref_fd else "no"
        if kind == "autoregressive":  # another model: the target is about the absorbing chain
            met = "–"
        load = f"{min(loads[label]):.1f}–{max(loads[label]):.1f}"
        print(
            f"| {label} | {rate:.1f} | {rate / ref_rate:.2f}× | {share:.0%} | "
            f"{fds[label]:.3f} | {fds[label] / ref_fd:.3f} | {prdc_cell(prdcs[label])} | {load} | "
            f"{met if label != ref_label else 'reference'} |"
        )
        rows.append(
            {"label": label, "images_per_s": rate, "speedup": rate / ref_rate, "fd": fds[label]}
            | {"fd_ratio": fds[label] / ref_fd, **prdcs[label]}
        )
    if json_out:
        record = {"project": str(args.project), "seed": args.seed, "n": args.n, "rows": rows}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
