"""Feature extraction for evaluation, and the cached real-image features stage."""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import save_npy
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.runtime import pick_device
from twostage.train.classifier import load_classifier


class FeatureExtractor:
    """Images (uint8 N×H×W×C) → feature vectors, with the extractor's name for metric keys."""

    def __init__(self, p: Params, dataset: str, device: torch.device):
        name = p["evaluation"]["extractor"]
        if name != "classifier":  # the registry grows with the evaluation issue
            raise ValueError(f"params/evaluation.yaml: evaluation.extractor: unknown {name!r}")
        self.name = name
        self.device = device
        self.model = load_classifier(dataset, device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        feats = [
            self.model.features(to_tensor(images[s : s + batch_size], self.device)).cpu()
            for s in range(0, len(images), batch_size)
        ]
        return torch.cat(feats).double().numpy()


def extract_real_features(p: Params, dataset: str) -> dict:
    """Features of both splits, computed once and shared by every run on the dataset."""
    device = pick_device(p["device"])
    extractor = FeatureExtractor(p, dataset, device)
    out = paths.features(dataset, extractor.name)
    shapes = {}
    for split in ("train", "val"):
        images, _ = load_split(dataset, split)
        feats = extractor(images)
        save_npy(out[split], feats)
        shapes[split] = list(feats.shape)
    return shapes
