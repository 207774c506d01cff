"""The real-features stage: every configured extractor's features of both splits, cached."""

from __future__ import annotations

import torch

from twostage.config import Params
from twostage.evaluate import cache, extractors
from twostage.runtime import pick_device


def primary_extractor(p: Params, dataset: str, device: torch.device) -> extractors.Extractor:
    """The primary extractor (``evaluation.extractor``) for ``dataset``."""
    return extractors.build(p, p["evaluation"]["extractor"], dataset, device)


def extract_real_features(p: Params, dataset: str) -> dict:
    """Features of both splits under every extractor, computed once and shared by every run.

    Returns extractor → "extracted" or "reused" (from the content-addressed store).
    """
    device = pick_device(p["device"])
    done = {}
    for name in extractors.configured(p):
        extractor = extractors.build(p, name, dataset, device)
        extracted = cache.write_outputs(p, dataset, extractor)
        done[name] = "extracted" if extracted else "reused"
    return done
