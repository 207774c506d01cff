"""Per-stage wall time and peak memory of the last Snakemake run, from its benchmark: files.

    python bench/stage_times.py [results/benchmarks]

Prints a Markdown table (stage, job, seconds, max RSS) and the total, for
bench/BENCHMARKS.md. Snakemake writes one TSV per job (the rule's `benchmark:`).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def read_benchmarks(root: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        with open(tsv) as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        stage = tsv.parent.name if tsv.parent != root else tsv.stem
        job = tsv.stem if tsv.parent != root else ""
        rows.append((stage, job, float(record["s"]), float(record["max_rss"] or 0)))
    return rows


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks")
    rows = read_benchmarks(root)
    if not rows:
        sys.exit(f"no benchmark files under {root}: run snakemake first")
    print("| stage | job | wall time (s) | max RSS (MB) |\n|---|---|---:|---:|")
    for stage, job, seconds, rss in rows:
        print(f"| {stage} | {job} | {seconds:.1f} | {rss:.0f} |")
    print(f"| **sum** | | **{sum(r[2] for r in rows):.1f}** | |")


if __name__ == "__main__":
    main()
