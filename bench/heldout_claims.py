"""A sampling claim judged on held-out models: mean and 95 % interval over training seeds.

    python bench/heldout_claims.py bench/results/sampling_heldout/*.json \\
        [--speedup 4] [--fd-ratio 1.05]

Each JSON is one `bench/sampling_speed.py --json` run on one model (a prior trained
with a seed that was not used to choose the sampler's settings). For every sampler row
it prints the speed-up and the FD ratio against that run's reference (its first row),
as mean ± the Student-t 95 % half-width over the runs, and whether the claim "at least
``--speedup``× faster at an FD ratio of at most ``--fd-ratio``" holds for the whole
interval (supported), for the mean only (not supported: the interval crosses the
line), or not at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from twostage.report.replicates import t_half_width


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and Student-t 95 % half-width (nan for a single value)."""
    return statistics.fmean(values), t_half_width(values)


def verdict(speedup: tuple[float, float], fd_ratio: tuple[float, float], s: float, f: float) -> str:
    """Whether ≥ ``s``× speed at FD ratio ≤ ``f`` holds over the intervals, the means, or not."""
    (sm, sh), (fm, fh) = speedup, fd_ratio
    if sm - sh >= s and fm + fh <= f:
        return "supported"
    if sm >= s and fm <= f:
        return "means only"
    return "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--speedup", type=float, default=4.0)
    parser.add_argument("--fd-ratio", type=float, default=1.05)
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.runs]
    labels = [row["label"] for row in runs[0]["rows"]]
    print(
        f"{len(runs)} held-out runs ({', '.join(r['project'] for r in runs)}), "
        f"{runs[0]['n']} images per row; mean ± 95 % t half-width over runs\n"
    )
    print("| sampler | speed-up | FD | FD ratio | per run: speed-up / FD ratio | claim |")
    print("|---|---:|---:|---:|:---|:---:|")
    for label in labels:
        rows = [next(x for x in r["rows"] if x["label"] == label) for r in runs]
        speed = interval([x["speedup"] for x in rows])
        ratio = interval([x["fd_ratio"] for x in rows])
        fd = interval([x["fd"] for x in rows])
        each = ", ".join(f"{x['speedup']:.2f}/{x['fd_ratio']:.3f}" for x in rows)
        claim = verdict(speed, ratio, args.speedup, args.fd_ratio)
        claim = "reference" if label == labels[0] else claim
        print(
            f"| {label} | {speed[0]:.2f} ± {speed[1]:.2f}× | {fd[0]:.1f} ± {fd[1]:.1f} | "
            f"{ratio[0]:.3f} ± {ratio[1]:.3f} | {each} | {claim} |"
        )


if __name__ == "__main__":
    main()
