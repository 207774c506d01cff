"""What every feature extractor is: uint8 images N×H×W×C → features, plus what the
evaluation protocol records about it (name, weights hash, resize)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

EVAL_FILE = "params/evaluation.yaml"


class UnknownExtractor(LookupError):
    """A family's builder does not serve this name after all (the registry says which do)."""


@dataclass
class Embedding:
    features: np.ndarray  # N×D float64
    logits: np.ndarray | None = None  # N×C (Inception only), for the Inception Score


class Extractor:
    """uint8 images N×H×W×C → features, plus what the protocol must record about it."""

    name: str
    weights_sha256: str | None
    resize: str
    metric_key: str  # "fid" for Inception, "fd_<name>" otherwise

    def embed(self, images: np.ndarray, batch_size: int = 64) -> Embedding:
        feats, logits = [], []
        for start in tqdm(
            range(0, len(images), batch_size), desc=f"features ({self.name})", leave=False
        ):
            f, lg = self._batch(images[start : start + batch_size])
            feats.append(f.double().cpu())
            if lg is not None:
                logits.append(lg.double().cpu())
        return Embedding(torch.cat(feats).numpy(), torch.cat(logits).numpy() if logits else None)

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self.embed(images, batch_size).features

    def info(self) -> dict:
        return {
            "extractor": self.name,
            "weights_sha256": self.weights_sha256,
            "resize": self.resize,
        }

    def _batch(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError
