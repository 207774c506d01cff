"""Training-step throughput of the absorbing prior, and achieved GFLOP/s against the matmul peak.

    python bench/prior_step.py [--steps 20] [--rounds 3]

The default prior of params/priors.yaml on random tokens, one training step =
loss → backward → optimizer step, exactly as train/token_prior.py does it. Variants are
measured interleaved (round-robin, ``--rounds`` times) so a shared machine's load hits
all of them alike; each row is the median over rounds, and ratios are against the
first row (the code as it is). Also measures a float32 matmul of the same shapes'
scale (2048³) in the same run: GFLOP/s of the step against that peak is what shows
kernel regressions.

FLOPs per step are counted as nanoGPT's estimate does: 6·N per token for the N
non-embedding weights (forward + backward), plus 12·layers·tokens·width per token
for attention scores and values.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from twostage.config import load_params, token_count
from twostage.models.priors.absorbing import AbsorbingDiffusion


def explicit_attention(q, k, v, is_causal=False, dropout_p=0.0):
    """softmax(q·kᵀ/√d)·v written out: what scaled_dot_product_attention replaces."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    return F.dropout(F.softmax(scores, dim=-1), dropout_p) @ v


def flops_per_step(model: AbsorbingDiffusion, spec: dict, batch: int) -> float:
    net = model.denoiser
    embedding = net.tok_emb.weight.numel() + net.pos_emb.numel()
    weights = sum(p.numel() for p in net.parameters()) - embedding
    tokens = batch * model.length
    attention = 12 * spec["n_layer"] * model.length * spec["n_embd"]
    return (6 * weights + attention) * tokens


def make_step(spec: dict, codebook: int, length: int, batch: int, optimizer: dict) -> Callable:
    torch.manual_seed(0)
    model = AbsorbingDiffusion(spec, codebook, length)
    opt = torch.optim.AdamW(
        model.parameters(), lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.0, **optimizer
    )
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, codebook, (4096, length), generator=gen)

    def step() -> None:
        z0 = data[torch.randint(0, len(data), (batch,), generator=gen)]
        loss, _ = model.loss(z0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.model = model
    return step


def matmul_gflops(size: int = 2048, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prior", default="absorbing_mnist")
    args = parser.parse_args()

    p = load_params()
    spec = dict(p.prior(args.prior))
    codebook = p.autoencoder(p.autoencoder_of_prior(args.prior))["codebook_size"]
    length = token_count(p.data, args.prior)
    batch = spec["batch_size"]
    # models/cpu_fast_paths.attention looks the kernel up in torch.nn.functional at every
    # call, so swapping it there swaps it for the prior.
    sdpa = F.scaled_dot_product_attention

    threads = torch.get_num_threads()
    # (label, batch, AdamW options, attention function, torch threads)
    variants = [
        ("as is: SDPA, AdamW (foreach)", batch, {}, sdpa, threads),
        ("fused AdamW", batch, {"fused": True}, sdpa, threads),
        ("for-loop AdamW", batch, {"foreach": False}, sdpa, threads),
        ("explicit attention", batch, {}, explicit_attention, threads),
        (f"batch {2 * batch}", 2 * batch, {}, sdpa, threads),
        (f"batch {4 * batch}", 4 * batch, {}, sdpa, threads),
        # Many small ops per step: on a loaded machine every parallel region waits for
        # a descheduled worker thread, so one thread can beat two.
        ("1 thread", batch, {}, sdpa, 1),
    ]
    steps = {label: make_step(spec, codebook, length, b, o) for label, b, o, *_ in variants}
    seconds: dict[str, list[float]] = {label: [] for label, *_ in variants}
    peaks = []
    for _ in range(args.rounds):
        peaks.append(matmul_gflops())
        for label, _, _, attention, n_threads in variants:
            F.scaled_dot_product_attention = attention
            torch.set_num_threads(n_threads)
            try:
                steps[label]()  # warm-up
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[label]()
                seconds[label].append((time.perf_counter() - start) / args.steps)
            finally:
                F.scaled_dot_product_attention = sdpa
                torch.set_num_threads(threads)

    peak = statistics.median(peaks)
    print(
        f"prior {args.prior}: {spec['n_layer']} layers × {spec['n_embd']} wide, {length} tokens, "
        f"K = {codebook}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load {os.getloadavg()[0]:.1f}; 2048³ fp32 matmul in the same run: {peak:.1f} GFLOP/s "
        f"(median of {args.rounds})\n"
    )
    print("| variant | ms/step | tokens/s | GFLOP/s | % of matmul | step-time ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    base = statistics.median(seconds[variants[0][0]])
    for label, b, *_ in variants:
        sec = statistics.median(seconds[label])
        gflops = flops_per_step(steps[label].model, spec, b) / sec / 1e9
        tokens = b * length / sec
        # For other batch sizes the fair ratio is per token, not per step.
        ratio = (sec / (b / batch)) / base
        print(
            f"| {label} | {sec * 1e3:.1f} | {tokens:.0f} | {gflops:.1f} | "
            f"{100 * gflops / peak:.0f}% | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
