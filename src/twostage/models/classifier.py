"""A small CNN classifier whose penultimate layer is the offline feature extractor.

With no internet and no Inception weights, the workflow trains this network
on the dataset's own labels (a DAG stage) and computes Fréchet distance and
PRDC in its feature space (reported as ``fd_classifier``).
"""

from __future__ import annotations

import torch
from torch import nn

from twostage.artifacts import checkpoint_contents, load_torch


class Classifier(nn.Module):
    def __init__(self, channels: int, num_classes: int, feature_dim: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * 4, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(path: str, device: torch.device) -> Classifier:
    """Rebuild the trained classifier from its ``model.pt`` (its sizes are stored in it)."""
    ckpt = load_torch(path)
    with checkpoint_contents(path):
        model = Classifier(ckpt["channels"], ckpt["num_classes"])
        model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
