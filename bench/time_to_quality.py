"""Time to quality in training: wall time for the absorbing prior to reach a fixed
validation ELBO, for the default settings and candidate changes, side by side.

    python bench/time_to_quality.py [--project DIR] [--threshold 3.91] [--chunk 50]

Trains the default prior of params/priors.yaml on the default run's cached latents
(``results/latents/``) from the same seed under several variants. The variants are
interleaved: each trains ``--chunk`` steps in turn, so load from other jobs on the
shared machine falls on all of them alike; only the training steps are timed (not the
validation passes). Every ``--eval-every`` steps the validation ELBO is measured exactly
as train/token_prior.py does (fixed generator, ``val_elbo_samples`` draws); a variant is done
when it first reaches ``--threshold`` bits per token (default 3.91: what the default
run's log shows at step 1500 of 2000, i.e. 75 % of its budget) or ``--max-steps``.

The last variant wraps ``model.loss`` in ``torch.compile`` (default mode): its compile
happens in its first timed chunk, so it counts in the time to threshold; "steady ms/step"
is the median over the chunks after the first, "1st chunk s" the first chunk's time.

The "bf16 autocast" variant sets the prior key ``cpu_bf16`` and wraps the training
forward exactly as train/token_prior.py does (``runtime.cpu_bf16_autocast``: only on a CPU with
native bf16, else it is the float32 default again, and says so). Validation stays float32.
The "cosine lr" variant sets ``lr_schedule: cosine`` (decay to 10 % of lr over the prior's
``steps`` budget, after the same warm-up); the shape variants change ``n_layer``/``n_embd``.

Achieved GFLOP/s uses the same count as bench/prior_step.py (nanoGPT's 6·N per token plus
attention) against 2048³ float32 and bf16 matmuls timed in the same run, between chunks;
"% of peak" is against the peak of the dtype the variant's matmuls run in.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from twostage import runtime

sys.path.insert(0, str(Path(__file__).parent))
from prior_step import flops_per_step, matmul_gflops  # noqa: E402

from twostage.config import load_params  # noqa: E402
from twostage.data.latents import load_tokens  # noqa: E402
from twostage.models.priors import build_prior  # noqa: E402
from twostage.train.common import InfiniteBatches, scheduled_lr, set_lr  # noqa: E402
from twostage.train.token_prior import validation_bound  # noqa: E402


class Run:
    """One variant's training state, advanced a chunk at a time."""

    def __init__(self, label, spec, tokens, val, codebook, seed, threads, optimizer, compile_):
        self.label, self.spec, self.tokens, self.val = label, spec, tokens, val
        self.threads = threads
        torch.manual_seed(seed)
        self.model = build_prior(spec, codebook, tokens.shape[1])
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=spec["lr"],
            betas=(0.9, 0.95),
            weight_decay=0.0,
            **optimizer,
        )
        self.loss = torch.compile(self.model.loss) if compile_ else self.model.loss
        self.batches = InfiniteBatches(
            len(tokens), spec["batch_size"], torch.Generator().manual_seed(seed)
        )
        self.step_gen = torch.Generator().manual_seed(seed + 1)
        self.bf16 = runtime.cpu_bf16_enabled(torch.device("cpu"), spec.get("cpu_bf16", False))
        self.step, self.seconds, self.reached, self.curve = 0, 0.0, None, []
        self.chunks: list[tuple[int, float]] = []  # (steps, seconds) of each timed chunk
        self.flops = flops_per_step(self.model, spec, spec["batch_size"])

    def train(self, n: int) -> None:
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        for _ in range(n):
            self.step += 1
            s = self.spec
            lr = scheduled_lr(
                self.step - 1,
                s["lr"],
                s["warmup_steps"],
                s["steps"],
                s.get("lr_schedule", "constant"),
            )
            set_lr(self.opt, lr)
            z0 = self.tokens[self.batches.next_indices()]
            with runtime.cpu_bf16_autocast(torch.device("cpu"), self.spec.get("cpu_bf16", False)):
                loss, _ = self.loss(z0, generator=self.step_gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.chunks.append((n, elapsed))

    def steady_ms(self) -> float:
        """Median ms/step over the chunks after the first (which holds warm-up / compile)."""
        later = self.chunks[1:] or self.chunks
        return statistics.median(1e3 * s / n for n, s in later)

    def validate(self, threshold: float) -> float:
        torch.set_num_threads(self.threads)
        val = validation_bound(self.model, self.val, self.spec.get("val_elbo_samples", 1), "cpu")
        self.curve.append((self.step, self.seconds, val))
        if self.reached is None and val <= threshold:
            self.reached = (self.step, self.seconds, val)
        return val


def variants(spec: dict, threads: int) -> list[tuple[str, dict, int, dict, bool]]:
    """(label, spec changes, torch threads, AdamW options, torch.compile); first = default."""
    b = spec["batch_size"]
    return [
        ("default (params/priors.yaml)", {}, threads, {}, False),
        *([("1 torch thread", {}, 1, {}, False)] if threads > 1 else []),
        ("fused AdamW", {}, threads, {"fused": True}, False),
        (f"batch {2 * b}", {"batch_size": 2 * b}, threads, {}, False),
        (f"lr {2 * spec['lr']:g}", {"lr": 2 * spec["lr"]}, threads, {}, False),
        ("torch.compile (default mode)", {}, threads, {}, True),
        ("bf16 autocast (cpu_bf16)", {"cpu_bf16": True}, threads, {}, False),
        (
            f"cosine lr to 10 % at step {spec['steps']}",
            {"lr_schedule": "cosine"},
            threads,
            {},
            False,
        ),
        ("3 layers", {"n_layer": 3}, threads, {}, False),
        ("n_embd 96", {"n_embd": 96}, threads, {}, False),
        ("n_embd 192", {"n_embd": 192}, threads, {}, False),
        ("bf16 + cosine lr", {"cpu_bf16": True, "lr_schedule": "cosine"}, threads, {}, False),
        # Loss weighting (the default is the paper's reweighted ELBO; validation is always
        # the ELBO, so the threshold means the same for each).
        *[
            (f"loss {loss}", {"loss_type": loss}, threads, {}, False)
            for loss in ("elbo", "reweighted_elbo", "mlm")
            if loss != spec["loss_type"]
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--prior", default="absorbing_mnist")
    parser.add_argument("--threshold", type=float, default=3.91)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--only", default="", help="comma-separated variant numbers (0 = default)")
    args = parser.parse_args()
    assert args.eval_every % args.chunk == 0

    os.chdir(args.project)
    p = load_params()
    spec = dict(p.prior(args.prior))
    ae = spec["autoencoder"]
    tokens, val = load_tokens(ae, "train"), load_tokens(ae, "val")
    codebook = p.autoencoder(ae)["codebook_size"]
    threads = args.threads or torch.get_num_threads()
    chosen = variants(spec, threads)
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    runs = [
        Run(label, {**spec, **change}, tokens, val, codebook, p["seed"], n, opt, comp)
        for label, change, n, opt, comp in chosen
    ]
    torch.set_num_threads(threads)
    if any(r.spec.get("cpu_bf16") and not r.bf16 for r in runs):
        print("this CPU lacks native bf16: the bf16 variant runs in float32", file=sys.stderr)
    peaks, loads = [matmul_gflops()], [os.getloadavg()[0]]
    bf16_peaks = [matmul_gflops(dtype=torch.bfloat16)]
    while any(r.reached is None and r.step < args.max_steps for r in runs):
        for r in runs:
            if r.reached is None and r.step < args.max_steps:
                r.train(args.chunk)
                if r.step % args.eval_every == 0:
                    r.validate(args.threshold)
        torch.set_num_threads(threads)
        peaks.append(matmul_gflops())
        bf16_peaks.append(matmul_gflops(dtype=torch.bfloat16))
        loads.append(os.getloadavg()[0])
        print(
            " | ".join(
                f"{r.label}: {r.step} st {r.seconds:.0f} s {r.curve[-1][2] if r.curve else 0:.3f}"
                for r in runs
            ),
            file=sys.stderr,
        )

    peak, bf16_peak = statistics.median(peaks), statistics.median(bf16_peaks)
    cpu = "native bf16" if runtime.cpu_has_native_bf16() else "no native bf16"
    print(
        f"prior {args.prior}: {spec['n_layer']} layers × {spec['n_embd']} wide, "
        f"{tokens.shape[1]} tokens, K = {codebook}, {len(tokens)} training sequences; "
        f"threshold: validation ELBO ≤ {args.threshold} bits/token (eval every "
        f"{args.eval_every} steps, interleaved chunks of {args.chunk}); torch "
        f"{torch.__version__}; load average {min(loads):.1f}–{max(loads):.1f} "
        f"(median {statistics.median(loads):.1f}); 2048³ fp32 matmul in the same run: "
        f"{peak:.1f} GFLOP/s (median of {len(peaks)}, range {min(peaks):.1f}–{max(peaks):.1f}); "
        f"2048³ bf16 matmul ({cpu}): {bf16_peak:.1f} GFLOP/s (range "
        f"{min(bf16_peaks):.1f}–{max(bf16_peaks):.1f}); {threads} torch thread(s)\n"
    )
    print(
        "| variant | steps to threshold | train s to threshold | time ratio | ms/step | "
        "steady ms/step | 1st chunk s | GFLOP/s | % of peak | val ELBO there |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = runs[0].reached[1] if runs[0].reached else None
    for r in runs:
        ms = 1e3 * r.seconds / r.step
        gflops = r.flops / (ms / 1e3) / 1e9
        share = f"{100 * gflops / (bf16_peak if r.bf16 else peak):.0f}%" + (
            " bf16" if r.bf16 else ""
        )
        extra = f"{r.steady_ms():.1f} | {r.chunks[0][1]:.1f}"
        if r.reached:
            step, sec, v = r.reached
            ratio = f"{sec / base:.2f}" if base else "–"
            print(
                f"| {r.label} | {step} | {sec:.1f} | {ratio} | {ms:.1f} | {extra} | {gflops:.1f} | "
                f"{share} | {v:.3f} |"
            )
        else:
            last = r.curve[-1][2] if r.curve else float("nan")
            print(
                f"| {r.label} | not reached in {r.step} | > {r.seconds:.1f} | – | {ms:.1f} | "
                f"{extra} | {gflops:.1f} | {share} | {last:.3f} (last) |"
            )
    print("\nValidation curves (step: train seconds, val ELBO):")
    for r in runs:
        print(f"- {r.label}: " + ", ".join(f"{s}: {t:.0f} s {v:.3f}" for s, t, v in r.curve))


if __name__ == "__main__":
    main()
