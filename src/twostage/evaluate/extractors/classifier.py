"""``classifier``: the penultimate layer of the CNN the workflow trains on the dataset's labels."""

from __future__ import annotations

import re

import torch
from torch import nn

from twostage import paths
from twostage.artifacts import file_sha256
from twostage.config import Params
from twostage.evaluate.extractors.base import Extractor
from twostage.images import to_tensor
from twostage.models.classifier import load_classifier


class ClassifierExtractor(Extractor):
    """Penultimate layer of a classifier CNN (trained by the workflow, or fixed random)."""

    def __init__(self, name: str, model: nn.Module, device: torch.device, weights_sha256):
        self.name, self.model, self.device = name, model.to(device).eval(), device
        self.weights_sha256 = weights_sha256
        self.resize = "none (native resolution)"
        self.metric_key = f"fd_{name}"

    @torch.no_grad()
    def _batch(self, images):
        return self.model.features(to_tensor(images, self.device)), None


def build_trained(p: Params, match: re.Match, dataset: str, device) -> Extractor:
    model_file = paths.classifier(dataset)["model"]
    return ClassifierExtractor(
        match[0], load_classifier(model_file, device), device, file_sha256(model_file)
    )
