"""``inception``, ``vgg16``, ``clip-<model>``, ``dinov2-<model>``: torch-fidelity's pretrained
extractors, fed uint8 RGB (grayscale repeated). Pretrained weights are never fetched
silently: each comes from the local file ``evaluation.weights.<name>``, or, only when
``evaluation.allow_download`` is true, from torch-fidelity's own download."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from twostage.artifacts import file_sha256
from twostage.config import ConfigError, Params
from twostage.evaluate.extractors.base import EVAL_FILE, Extractor, UnknownExtractor

# torch-fidelity's own input handling, recorded as the protocol's resize mode.
RESIZE = {
    "inception-v3-compat": "torch-fidelity: TF1-compatible bilinear to 299x299",
    "vgg16": "torch-fidelity: TF1-compatible bilinear to 224x224",
    "clip": "torch-fidelity: TF1-compatible bilinear to the CLIP model's input size",
    "dinov2": "torch-fidelity: TF1-compatible bilinear to 224x224",
}


class TorchFidelityExtractor(Extractor):
    """A torch-fidelity feature extractor network: ``layer`` its features, ``logits_layer``
    (or None) its logits for the Inception Score."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        layer: str,
        logits_layer: str | None,
        resize: str,
        weights_sha256: str | None,
        device: torch.device,
    ):
        self.name, self.device, self.layer, self.logits_layer = name, device, layer, logits_layer
        self.model = model.to(device).eval()
        self.resize, self.weights_sha256 = resize, weights_sha256
        self.metric_key = "fid" if name == "inception" else f"fd_{name}"

    @torch.no_grad()
    def _batch(self, images):
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out = dict(zip(self.model.features_list, self.model(x.to(self.device)), strict=True))
        return out[self.layer], out[self.logits_layer] if self.logits_layer else None


def pretrained(
    name: str,
    tf_name: str,
    layer: str,
    logits_layer: str | None,
    weights_path: str | None,
    device: torch.device,
) -> TorchFidelityExtractor:
    """torch-fidelity's network ``tf_name`` with the weights in ``weights_path`` (None: its
    own download)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    layers = [layer] + ([logits_layer] if logits_layer else [])
    cls = FEATURE_EXTRACTORS_REGISTRY[tf_name]
    model = cls(tf_name, layers, feature_extractor_weights_path=weights_path)
    resize = RESIZE.get(tf_name, RESIZE.get(tf_name.split("-")[0], "torch-fidelity"))
    digest = _downloaded_sha256(tf_name) if weights_path is None else file_sha256(weights_path)
    return TorchFidelityExtractor(name, model, layer, logits_layer, resize, digest, device)


def _downloaded_sha256(tf_name: str) -> str | None:
    """sha256 of the file torch-fidelity downloaded into the torch hub cache, if one is there."""
    from torch_fidelity import feature_extractor_inceptionv3 as inc

    if tf_name != "inception-v3-compat":
        return None
    f = Path(torch.hub.get_dir(), "checkpoints", os.path.basename(inc.URL_INCEPTION_V3))
    return file_sha256(f) if f.is_file() else None


def builder(tf_name: str | None, layer: str | None, logits_layer: str | None):
    """The builder of a torch-fidelity extractor: its registry name, feature layer and
    logits layer for the Inception Score (or None). ``tf_name`` and ``layer`` None: the
    extractor's own name, and one feature named after its family (torch-fidelity's
    clip-* and dinov2-*)."""

    def build_it(p: Params, match: re.Match, dataset: str, device) -> Extractor:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        name = match[0]
        tf, feature = tf_name or name, layer or name.split("-")[0]
        if tf not in FEATURE_EXTRACTORS_REGISTRY:
            raise UnknownExtractor(name)
        return _with_local_weights(p, name, tf, feature, logits_layer, device)

    return build_it


def _with_local_weights(
    p: Params, name: str, tf_name: str, layer: str, logits_layer: str | None, device
) -> Extractor:
    allow_download = p["evaluation"]["allow_download"]
    if tf_name.startswith("dinov2") and not allow_download:
        # torch-fidelity 0.4.0 builds DINOv2 only through torch.hub (code + weights).
        raise ConfigError(
            f"{EVAL_FILE}: evaluation.extractor: {name} cannot load from a local file with "
            "torch-fidelity 0.4.0 (it needs torch.hub): set evaluation.allow_download: true"
        )
    path = p["evaluation"]["weights"].get(name)
    if path is not None and Path(path).is_file():
        return pretrained(name, tf_name, layer, logits_layer, path, device)
    if allow_download:
        return pretrained(name, tf_name, layer, logits_layer, None, device)
    wanted = path or f"resources/weights/{tf_name}.pth"
    raise ConfigError(
        f"{EVAL_FILE}: evaluation.weights.{name}: weights file {wanted} not found; provide it "
        f"(a state dict, DVC-tracked under resources/weights/), set evaluation.weights.{name} "
        "to its path, or set evaluation.allow_download: true where the network is reachable"
    )
