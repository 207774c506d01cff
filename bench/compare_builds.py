"""Do two builds of the same params give the same results? (e.g. before and after a refactor)

    python bench/compare_builds.py OLD_PROJECT NEW_PROJECT

Every file under results/ of either (logs, benchmarks and the report page aside): equal
bytes, or for a checkpoint equal weights and entries (its stored params entry may differ by
filled defaults: listed), for JSON equal values without timings and provenance
(``versions``, ``*_s``, ``samples_per_s``, ``seconds_per_image``), for CSV equal columns
without timings. Prints each difference and a count; exits 1 if any result differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

SKIP_KEYS = {"versions", "samples_per_s", "seconds_per_image"}
SKIP_DIRS = ("logs", "benchmarks", "report")


def without_timings(x):
    if isinstance(x, dict):
        return {
            k: without_timings(v)
            for k, v in x.items()
            if k not in SKIP_KEYS and not k.endswith("_s")
        }
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def equal(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and set(x) == set(y) and all(equal(x[k], y[k]) for k in x)
    return x == y


def compare(a: Path, b: Path) -> tuple[bool, str]:
    """Whether ``a`` and ``b`` hold the same result, and a line when they differ in any way."""
    if a.read_bytes() == b.read_bytes():
        return True, ""
    if a.suffix == ".json":
        ja, jb = (without_timings(json.loads(f.read_text())) for f in (a, b))
        return ja == jb, "" if ja == jb else "values differ"
    if a.suffix == ".pt":
        ca, cb = (torch.load(f, weights_only=True) for f in (a, b))
        spec_a, spec_b = ca.pop("spec", {}), cb.pop("spec", {})
        if not equal(ca, cb):
            return False, "weights or entries differ"
        filled = sorted(set(spec_a) ^ set(spec_b))
        return True, f"same weights; params entry differs by {filled}"
    if a.suffix == ".csv":
        da, db = pd.read_csv(a), pd.read_csv(b)
        cols = [c for c in da.columns if not c.endswith("_s") and "time" not in c]
        same = list(da.columns) == list(db.columns) and da[cols].equals(db[cols])
        return same, "" if same else "columns or values differ"
    return False, "bytes differ"


def main() -> None:
    old, new = (Path(arg) / "results" for arg in sys.argv[1:3])
    files = {p.relative_to(root) for root in (old, new) for p in root.rglob("*") if p.is_file()}
    counts = {"same": 0, "differ": 0, "only old": 0, "only new": 0}
    for rel in sorted(files):
        if rel.parts[0] in SKIP_DIRS or rel.suffix == ".sha256" or rel.name == "versions.yaml":
            continue
        if not (new / rel).is_file() or not (old / rel).is_file():
            side = "only old" if (old / rel).is_file() else "only new"
            counts[side] += 1
            print(f"{side}: {rel}")
            continue
        same, line = compare(old / rel, new / rel)
        counts["same" if same else "differ"] += 1
        if line:
            print(f"{rel}: {line}")
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    sys.exit(1 if counts["differ"] or counts["only old"] or counts["only new"] else 0)


if __name__ == "__main__":
    main()
