"""Benchmark twostage's chunked PRDC against the reference ``prdc`` package.

Each (implementation, size) runs in its own fresh Python subprocess, so the peak
memory of one run cannot hide inside another's. The worker reports:

* time: wall-clock seconds of the ``compute_prdc`` call alone (features pre-built);
* peak RSS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end, i.e. the
  process's resident-memory high-water mark (interpreter + libraries + features +
  the computation);
* Δ peak: that high-water mark minus the one measured just before the call, i.e. the
  extra memory the metric computation itself needed.

The parent also reads ``RUSAGE_CHILDREN`` after each worker (the largest peak of any
child so far, so it is only informative in increasing-size order) as a cross-check,
and records the 1-minute load average before each worker: the machine is shared.

The worker also reports whether torch got imported (ours must not import it on the
CPU: ~350 MiB of RSS).

``--threads N`` sets OMP/OPENBLAS/MKL_NUM_THREADS for the workers, so both sides' BLAS
use N threads (the reference still runs sklearn with ``n_jobs=8`` Python threads on top;
pin the whole run to cores with ``taskset`` to bound what it can use).

The parent asserts that both implementations return identical numbers (``==``) and
prints a markdown table.

    taskset -c 1 python bench/bench_prdc.py --threads 1 --sizes 5000,10000,20000
    taskset -c 1 python bench/bench_prdc.py --threads 1 --sizes 50000 --impls twostage
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

IMPLEMENTATIONS = ("twostage", "prdc")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPO = Path(__file__).resolve().parents[1]


def make_features(n: int, dim: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real ~ N(0, I), fake ~ N(0, 1.01² I).

    In 2048-D a larger mismatch already drives precision to ~0; this one keeps all
    four metrics away from 0 and 1, so the comparisons are actually exercised.
    """
    rng = np.random.default_rng(seed)
    # Built in place (the same numbers as ``(1.01 * z).astype(dtype)``), so that no
    # full-size temporary of the harness's own sets either side's peak RSS.
    real = rng.standard_normal((n, dim)).astype(dtype, copy=False)
    fake = rng.standard_normal((n, dim))
    fake *= 1.01
    return real, fake.astype(dtype, copy=False)


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(impl: str, n: int, dim: int, dtype: str, k: int, chunk_size: int, seed: int) -> dict:
    """Run one implementation once, in this (fresh) process."""
    if impl == "twostage":
        from twostage.evaluate.prdc import compute_prdc

        def run(real: np.ndarray, fake: np.ndarray) -> dict:
            return compute_prdc(real, fake, nearest_k=k, chunk_size=chunk_size)
    else:
        import prdc

        def run(real: np.ndarray, fake: np.ndarray) -> dict:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
                return prdc.compute_prdc(real, fake, k)

    # Warm up on a tiny problem first, so lazily loaded libraries and thread pools
    # (torch's, sklearn's) count in neither side's Δ peak.
    run(*make_features(2 * k + 8, dim, dtype, seed + 1))
    real, fake = make_features(n, dim, dtype, seed)
    baseline = peak_rss_mib()
    start = time.perf_counter()
    result = run(real, fake)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    return {
        "torch_imported": "torch" in sys.modules,
        "seconds": seconds,
        "peak_mib": peak,
        "delta_mib": peak - baseline,
        "result": {key: float(value) for key, value in result.items()},
    }


def run_in_subprocess(impl: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        impl,
        "--n",
        str(n),
        "--dim",
        str(args.dim),
        "--dtype",
        args.dtype,
        "--k",
        str(args.k),
        "--chunk-size",
        str(args.chunk_size),
        "--seed",
        str(args.seed),
    ]
    env = dict(os.environ)
    if args.threads:
        env.update({name: str(args.threads) for name in THREAD_VARIABLES})
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, env=env)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    stats["load"] = load
    stats["children_peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return stats


def settings(args: argparse.Namespace) -> str:
    threads = args.threads or os.environ.get("OPENBLAS_NUM_THREADS", "default")
    return (
        f"dim={args.dim}, dtype={args.dtype}, k={args.k}, chunk_size={args.chunk_size}, "
        f"BLAS threads={threads}"
    )


def torch_note(rows: list[dict], args: argparse.Namespace) -> str:
    imported = {impl: any(row[impl]["torch_imported"] for row in rows) for impl in args.impls}
    return "torch imported: " + ", ".join(
        f"{impl} {'yes' if flag else 'no'}" for impl, flag in imported.items()
    )


def table(rows: list[dict], args: argparse.Namespace) -> str:
    if len(args.impls) == 1:
        return single_table(rows, args)
    lines = [
        settings(args),
        "",
        "| N = M | twostage time (s) | prdc time (s) | speed-up | "
        "twostage peak RSS (MiB) | prdc peak RSS (MiB) | "
        "twostage Δ peak (MiB) | prdc Δ peak (MiB) | peak ratio | Δ ratio | "
        "load | identical | P / R / D / C |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---|",
    ]
    for row in rows:
        ours, ref = row["twostage"], row["prdc"]
        lines.append(
            f"| {row['n']} | {ours['seconds']:.2f} | {ref['seconds']:.2f} | "
            f"{ref['seconds'] / ours['seconds']:.2f}× | "
            f"{ours['peak_mib']:.0f} | {ref['peak_mib']:.0f} | "
            f"{ours['delta_mib']:.0f} | {ref['delta_mib']:.0f} | "
            f"{ours['peak_mib'] / ref['peak_mib']:.2f} | "
            f"{ours['delta_mib'] / ref['delta_mib']:.2f} | "
            f"{ours['load']:.1f}–{ref['load']:.1f} | "
            f"{'yes' if row['identical'] else 'NO'} | "
            f"{' / '.join(f'{value:.4f}' for value in ours['result'].values())} |"
        )
    return "\n".join([*lines, "", torch_note(rows, args)])


def single_table(rows: list[dict], args: argparse.Namespace) -> str:
    (impl,) = args.impls
    lines = [
        f"{impl} alone; {settings(args)}",
        "",
        "| N = M | time (s) | peak RSS (MiB) | Δ peak (MiB) | load | P / R / D / C |",
        "|---:|---:|---:|---:|---:|:---|",
    ]
    for row in rows:
        stats = row[impl]
        lines.append(
            f"| {row['n']} | {stats['seconds']:.1f} | {stats['peak_mib']:.0f} | "
            f"{stats['delta_mib']:.0f} | {stats['load']:.1f} | "
            f"{' / '.join(f'{value:.4f}' for value in stats['result'].values())} |"
        )
    return "\n".join([*lines, "", torch_note(rows, args)])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="5000,10000,20000", help="comma-separated N (= M) values"
    )
    parser.add_argument(
        "--impls",
        type=lambda text: tuple(text.split(",")),
        default=IMPLEMENTATIONS,
        help="comma-separated subset of: " + ", ".join(IMPLEMENTATIONS),
    )
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS/OpenMP threads for both sides' workers (default: the environment's)",
    )
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        stats = worker(
            args.worker, args.n, args.dim, args.dtype, args.k, args.chunk_size, args.seed
        )
        print(json.dumps(stats))
        return

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        row = {"n": n, **{impl: run_in_subprocess(impl, n, args) for impl in args.impls}}
        results = [row[impl]["result"] for impl in args.impls]
        row["identical"] = all(result == results[0] for result in results)
        print(f"N=M={n}: {json.dumps(row)}", file=sys.stderr)
        rows.append(row)
    print(table(rows, args))
    mismatched = [row["n"] for row in rows if not row["identical"]]
    if mismatched:
        raise SystemExit(f"results differ from the reference at N = {mismatched}")


if __name__ == "__main__":
    main()
