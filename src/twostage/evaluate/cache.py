"""Real-image features, computed once per (dataset hash, extractor, weights hash, resolution).

The declared DAG outputs (``results/features/<dataset>-<extractor>/``) are what every
run reads. Behind them sits a content-addressed store outside the declared outputs
(Snakemake and DVC delete declared outputs before a rerun): a rerun for a reason that
does not change the features (the global seed, a new extra extractor, a code change)
copies them from the store instead of running the network again, and a changed
dataset or weights file gives a new key, so stale features are never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from twostage import paths
from twostage.artifacts import ArtifactError, load_npy, read_json, save_npy, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.data.sources import DataError
from twostage.evaluate.extractors.base import Extractor

log = logging.getLogger(__name__)

STORE = ".twostage-state/features"
SPLITS = ("train", "val")


def dataset_sha256(dataset: str) -> str:
    """One hash of the dataset's arrays, from the sha256s its manifest records."""
    manifest = read_json(paths.data(dataset)["manifest"], keys=("sha256",))
    return hashlib.sha256(json.dumps(manifest["sha256"], sort_keys=True).encode()).hexdigest()


def cache_key(p: Params, dataset: str, extractor: Extractor) -> dict:
    return {
        "dataset": dataset,
        "dataset_sha256": dataset_sha256(dataset),
        "resolution": p.dataset(dataset)["resolution"],
        **extractor.info(),
    }


def _store_dir(key: dict) -> Path:
    # The dataset's name is not part of its identity: equal arrays share features.
    identity = {k: v for k, v in key.items() if k != "dataset"}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Path(STORE, digest[:24])


def real_features(p: Params, dataset: str, extractor: Extractor) -> tuple[dict, bool]:
    """Both splits' features from the store, extracting them first if absent.

    Returns (split → features, whether the network had to run).
    """
    key = cache_key(p, dataset, extractor)
    store = _store_dir(key)
    files = {split: store / f"{split}.npy" for split in SPLITS}
    if all(f.is_file() for f in files.values()):
        try:
            stored = {split: load_npy(f, ndim=2, kinds="f") for split, f in files.items()}
        except ArtifactError as exc:  # a cache, not a result: a damaged entry is recomputed
            log.warning("recomputing real features: %s", exc)
        else:
            log.info("real features of %s under %s: reused from %s", dataset, extractor.name, store)
            return stored, False
    feats = {}
    for split in SPLITS:
        images, _ = load_split(dataset, split)
        feats[split] = extractor(images)
        save_npy(files[split], feats[split])
    write_json(store / "key.json", key)
    return feats, True


def write_outputs(p: Params, dataset: str, extractor: Extractor) -> bool:
    """The declared outputs for (dataset, extractor); True if features were extracted."""
    feats, extracted = real_features(p, dataset, extractor)
    out = paths.features(dataset, extractor.name)
    for split in SPLITS:
        save_npy(out[split], feats[split])
    write_json(out["key"], cache_key(p, dataset, extractor))
    return extracted


def load_train_features(p: Params, dataset: str, extractor: Extractor) -> np.ndarray:
    """The cached training features, refused if they belong to other data or weights."""
    out = paths.features(dataset, extractor.name)
    saved = read_json(out["key"])
    current = cache_key(p, dataset, extractor)
    stale = sorted(k for k in current if saved.get(k) != current[k])
    if stale:
        raise DataError(
            f"{out['key']}: real features are stale ({', '.join(stale)} changed): "
            f"rerun `twostage extract-features {dataset}`"
        )
    return load_npy(out["train"], ndim=2, kinds="f")
