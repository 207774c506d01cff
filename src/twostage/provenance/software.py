"""The installed software that shapes the numbers, and one hash of it.

These are the packages whose code computes a result: the array and network libraries,
the metric implementations, the image codec and the dataset source. Tools that only
orchestrate or draw (Snakemake, DVC, pandas, matplotlib, PyYAML) are left out, so
upgrading them reruns nothing. ``prdc`` is not among them: the pipeline's PRDC is its own
port (evaluate/prdc.py), checked against that package only in the tests.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata

NUMERIC_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch-fidelity",
    "lpips",
    "pillow",
    "mlxtend",
)
# Imported by the code but computing no result: reading params, progress bars, the
# report's tables and figures, BLAS thread caps (threadpoolctl, installed with scikit-learn).
NOT_NUMERIC = ("jsonschema", "pyyaml", "tqdm", "pandas", "matplotlib", "threadpoolctl")


def versions() -> dict[str, str]:
    """Python's and each numeric package's installed version (as pip records it)."""
    found = {"python": platform.python_version()}
    for package in NUMERIC_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def software_hash(found: dict[str, str] | None = None) -> str:
    """16 hex digits that change when any version in :func:`versions` changes."""
    text = json.dumps(versions() if found is None else found, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
