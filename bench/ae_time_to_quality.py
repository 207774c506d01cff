"""Time to quality in stage-1 training: wall time for the VQ autoencoder to reach a fixed
validation reconstruction error, for the default settings and candidate changes, side by side.

    python bench/ae_time_to_quality.py [--project DIR] [--thresholds 0.0197,0.0152] [--chunk 50]

Trains the default ``vq_mnist`` autoencoder of params/autoencoders.yaml on the default run's
prepared data (``results/data/``) from the same seed under several variants, with the
package's own training step (train/vq_step.py's ``VQTrainer.step``) and validation
(train/vq.py's ``vq_validation_metrics``: MSE on the quantised uint8 output,
[0, 1] scale, whole validation split). The variants are interleaved: each trains
``--chunk`` steps in turn, so load from other jobs on the shared machine falls on all of
them alike; only the training steps (batch conversion + step) are timed, not the
validation passes. Every ``--eval-every`` steps the validation MSE is measured; a variant
is done when it reaches the lowest of ``--thresholds`` (defaults: the default run's
validation MSE at steps 500 and 750 of 1000, rounded up) or ``--max-steps``.

Variants: the default; channels-last memory format (model and input batches);
``torch.compile`` of the autoencoder (default mode; the compile happens in the first timed
chunk, so it counts in the time to threshold; validation runs the uncompiled module, which
holds the same weights). Ctrl-C prints the results so far.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from twostage.config import load_params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.models.autoencoders.vq import VQAutoencoder
from twostage.runtime import seed_everything
from twostage.train.common import InfiniteBatches
from twostage.train.vq import vq_validation_metrics
from twostage.train.vq_step import VQTrainer


class Run:
    """One variant's training state, advanced a chunk at a time."""

    def __init__(self, label, spec, ds_spec, train_x, val_images, seed, threads, variant):
        self.label, self.train_x, self.val_images = label, train_x, val_images
        self.threads = threads
        self.channels_last = variant == "channels_last"
        gen = seed_everything(seed)  # as train/vq.py: seed, build, then batches
        self.model = VQAutoencoder(spec, ds_spec["channels"], ds_spec["resolution"])
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        trained = torch.compile(self.model) if variant == "compile" else self.model
        self.trainer = VQTrainer(trained, spec, ds_spec["channels"], torch.device("cpu"))
        assert self.trainer.ema is None, "validation uses the trained weights, not an EMA"
        self.batches = InfiniteBatches(len(train_x), spec["batch_size"], gen)
        self.step, self.seconds, self.curve = 0, 0.0, []
        self.reached: dict[float, tuple[int, float, float]] = {}
        self.chunks: list[tuple[int, float]] = []  # (steps, seconds) of each timed chunk

    def train(self, n: int) -> None:
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        for _ in range(n):
            self.step += 1
            x = to_tensor(self.train_x[self.batches.next_indices()].numpy())
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.trainer.step(x, self.step)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.chunks.append((n, elapsed))

    def validate(self, thresholds: list[float]) -> float:
        torch.set_num_threads(self.threads)
        mse = vq_validation_metrics(self.model, self.val_images, torch.device("cpu"))["val_mse"]
        self.curve.append((self.step, self.seconds, mse))
        for t in thresholds:
            if t not in self.reached and mse <= t:
                self.reached[t] = (self.step, self.seconds, mse)
        return mse

    def steady_ms(self) -> float:
        """Median ms/step over the chunks after the first (which holds warm-up / compile)."""
        later = self.chunks[1:] or self.chunks
        return statistics.median(1e3 * s / n for n, s in later)


VARIANTS = [
    ("default (params/autoencoders.yaml)", "default"),
    ("channels-last (model + inputs)", "channels_last"),
    ("torch.compile (default mode)", "compile"),
]


def report(runs: list[Run], thresholds: list[float], header: str) -> None:
    print(header + "\n")
    for t in thresholds:
        print(f"Threshold: validation MSE ≤ {t}\n")
        print(
            "| variant | steps to threshold | train s to threshold | time ratio | ms/step | "
            "steady ms/step | 1st chunk s | val MSE there |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = runs[0].reached.get(t)
        for r in runs:
            ms = 1e3 * r.seconds / max(r.step, 1)
            extra = f"{r.steady_ms():.1f} | {r.chunks[0][1]:.1f}" if r.chunks else "– | –"
            if t in r.reached:
                step, sec, v = r.reached[t]
                ratio = f"{sec / base[1]:.2f}" if base else "–"
                print(
                    f"| {r.label} | {step} | {sec:.1f} | {ratio} | {ms:.1f} | {extra} | {v:.5f} |"
                )
            else:
                last = r.curve[-1][2] if r.curve else float("nan")
                print(
                    f"| {r.label} | not reached in {r.step} | > {r.seconds:.1f} | – | {ms:.1f} | "
                    f"{extra} | {last:.5f} (last) |"
                )
        print()
    print("Validation curves (step: train seconds, val MSE):")
    for r in runs:
        print(f"- {r.label}: " + ", ".join(f"{s}: {t:.0f} s {v:.5f}" for s, t, v in r.curve))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--autoencoder", default="vq_mnist")
    parser.add_argument("--thresholds", default="0.0197,0.0152")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--only", default="", help="comma-separated variant numbers (0 = default)")
    args = parser.parse_args()
    assert args.eval_every % args.chunk == 0
    thresholds = sorted((float(t) for t in args.thresholds.split(",")), reverse=True)

    os.chdir(args.project)
    p = load_params()
    spec = dict(p.autoencoder(args.autoencoder))
    ds_spec = p.dataset(spec["dataset"])
    train_images, _ = load_split(spec["dataset"], "train")
    val_images, _ = load_split(spec["dataset"], "val")
    train_x = torch.from_numpy(train_images)
    threads = args.threads or torch.get_num_threads()
    chosen = VARIANTS
    if args.only:
        chosen = [VARIANTS[int(i)] for i in args.only.split(",")]
    runs = [
        Run(label, spec, ds_spec, train_x, val_images, p["seed"], threads, v) for label, v in chosen
    ]
    loads = [os.getloadavg()[0]]

    def pending(r: Run) -> bool:
        return thresholds[-1] not in r.reached and r.step < args.max_steps

    try:
        while any(pending(r) for r in runs):
            for r in runs:
                if pending(r):
                    r.train(args.chunk)
                    if r.step % args.eval_every == 0:
                        r.validate(thresholds)
            loads.append(os.getloadavg()[0])
            print(
                " | ".join(
                    f"{r.label}: {r.step} st {r.seconds:.0f} s "
                    f"{r.curve[-1][2] if r.curve else 0:.5f}"
                    for r in runs
                ),
                file=sys.stderr,
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted: results so far", file=sys.stderr)

    report(
        runs,
        thresholds,
        f"autoencoder {args.autoencoder}: nf {spec['nf']}, ch_mult {spec['ch_mult']}, "
        f"K = {spec['codebook_size']}, batch {spec['batch_size']}, lr {spec['lr']}, "
        f"{len(train_images)} training / {len(val_images)} validation images; eval every "
        f"{args.eval_every} steps, interleaved chunks of {args.chunk}; {threads} torch "
        f"thread(s); torch {torch.__version__}; load average {min(loads):.1f}–{max(loads):.1f} "
        f"(median {statistics.median(loads):.1f})",
    )


if __name__ == "__main__":
    main()
