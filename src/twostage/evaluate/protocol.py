"""The evaluation protocol: one function scores a set of images against the real data.

Runs and calibration rows both go through :func:`score`, so their numbers are
computed identically (same extractor, same real reference, same k). Every block of
numbers carries a ``protocol`` dict saying how it was computed (sample counts, k,
extractor, weights sha256, resize mode): published FIDs are often irreproducible
because exactly these details went unrecorded.
"""

from __future__ import annotations

import numpy as np
import torch

from twostage.evaluate.frechet import frechet_distance_from_features
from twostage.evaluate.kid import kid_mean_std
from twostage.evaluate.prdc import compute_prdc

# KID as in the KID paper and torch-fidelity: 100 subsets of (at most) 1000 samples.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
# torch-fidelity's default number of splits for the Inception Score.
IS_SPLITS = 10


def real_subset(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A fixed random subset of the real features, so PRDC compares equal-sized sets."""
    if n >= len(real):
        return real
    idx = np.random.default_rng(seed).choice(len(real), size=n, replace=False)
    return real[np.sort(idx)]


def metric_key(extractor: str) -> str:
    """``fid`` means InceptionV3 features (paper-comparable); anything else is ``fd_<name>``."""
    return "fid" if extractor == "inception" else f"fd_{extractor}"


def frechet(fake: np.ndarray, real: np.ndarray, extractor: str) -> float:
    """FID through torch-fidelity's own formula for Inception; ours (scipy sqrtm) otherwise."""
    if extractor == "inception":
        return fid_torch_fidelity(fake, real)
    return frechet_distance_from_features(fake, real)


def score(
    fake: np.ndarray,
    real_train: np.ndarray,
    extractor: str,
    nearest_k: int,
    seed: int,
    info: dict | None = None,
) -> dict:
    """FD against all training features; PRDC against an equal-sized training subset.

    ``info`` (from ``Extractor.info()``) adds the weights hash and resize mode to the protocol.
    """
    real = real_subset(real_train, len(fake), seed)
    prdc = compute_prdc(real, fake, nearest_k=nearest_k)
    return {
        metric_key(extractor): frechet(fake, real_train, extractor),
        **prdc,
        "protocol": {
            "extractor": extractor,
            "n_fake": len(fake),
            "n_real_fd": len(real_train),
            "n_real_prdc": len(real),
            "nearest_k": nearest_k,
            "reference": "train",
            **(info or {}),
        },
    }


def fid_torch_fidelity(fake: np.ndarray, real: np.ndarray) -> float:
    """FID exactly as torch-fidelity computes it from two feature sets (paper-comparable)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [
        fid_features_to_statistics(torch.from_numpy(f.astype(np.float32))) for f in (fake, real)
    ]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def kid(fake: np.ndarray, real: np.ndarray, seed: int) -> tuple[dict, dict]:
    """KID mean/std exactly as torch-fidelity computes it (kid.py), and the subset protocol."""
    size = min(KID_SUBSET_SIZE, len(fake), len(real))
    mean, std = kid_mean_std(fake, real, KID_SUBSETS, size, seed)
    values = {"kid_mean": mean, "kid_std": std}
    return values, {"kid_subsets": KID_SUBSETS, "kid_subset_size": size}


def inception_score(logits: np.ndarray, seed: int) -> dict:
    """Inception Score of the fakes' unbiased Inception logits, through torch-fidelity."""
    from torch_fidelity.metric_isc import isc_features_to_metric

    splits = min(IS_SPLITS, len(logits))
    out = isc_features_to_metric(torch.from_numpy(logits), splits=splits, rng_seed=seed)
    return {
        "inception_score_mean": out["inception_score_mean"],
        "inception_score_std": out["inception_score_std"],
        "inception_score_splits": splits,
    }


def kid_and_is(
    fake: np.ndarray,
    real_train: np.ndarray,
    extractor: str,
    seed: int,
    fake_logits: np.ndarray | None = None,
) -> tuple[dict, dict]:
    """KID (``kid_mean``/``kid_std`` for Inception, ``kid_<name>_*`` otherwise) and, given
    logits, the Inception Score; returns (values, what the protocol must record)."""
    values, protocol = kid(fake, real_train, seed)
    if extractor != "inception":
        values = {f"kid_{extractor}_{k[4:]}": v for k, v in values.items()}
    if fake_logits is not None:
        is_values = inception_score(fake_logits, seed)
        protocol["inception_score_splits"] = is_values.pop("inception_score_splits")
        values.update(is_values)
    return values, protocol


def score_extra(
    fake: np.ndarray,
    real_train: np.ndarray,
    extractor: str,
    info: dict,
    seed: int,
    fake_logits: np.ndarray | None = None,
) -> dict:
    """An extra extractor's block: Fréchet distance, KID and (Inception) IS, with its protocol."""
    values, protocol = kid_and_is(fake, real_train, extractor, seed, fake_logits)
    return {
        metric_key(extractor): frechet(fake, real_train, extractor),
        **values,
        "protocol": {
            "extractor": extractor,
            "n_fake": len(fake),
            "n_real_fd": len(real_train),
            "reference": "train",
            **info,
            **protocol,
        },
    }
