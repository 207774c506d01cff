"""The feature-extractor registry (``REGISTRY``): a name in params → a network that embeds
uint8 images.

Names (``evaluation.extractor`` and ``evaluation.extra_extractors``):

- ``inception``: torch-fidelity ``inception-v3-compat``, 2048-D pool features (metric ``fid``,
  comparable to papers), plus its unbiased logits for the Inception Score;
- ``vgg16``, ``clip-<model>`` (e.g. ``clip-vit-b-32``), ``dinov2-<model>`` (torch.hub only; e.g.
  ``dinov2-vit-s-14``): the other torch-fidelity 0.4.0 extractors (metric ``fd_<name>``);
- ``classifier``: the penultimate layer of the CNN the workflow trains on the dataset's labels;
- ``random-<arch>-<seed>`` (arch ``classifier`` or ``inception``): a fixed-seed random network,
  the extractor that needs nothing at all.

Pretrained weights are never fetched silently: each comes from the local file
``evaluation.weights.<name>`` (DVC-tracked under ``resources/weights/``), or, only when
``evaluation.allow_download`` is true, from torch-fidelity's own download.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import file_sha256
from twostage.config import ConfigError, Params
from twostage.images import to_tensor

EVAL_FILE = "params/evaluation.yaml"

# torch-fidelity's own input handling, recorded as the protocol's resize mode.
_RESIZE = {
    "inception-v3-compat": "torch-fidelity: TF1-compatible bilinear to 299x299",
    "vgg16": "torch-fidelity: TF1-compatible bilinear to 224x224",
    "clip": "torch-fidelity: TF1-compatible bilinear to the CLIP model's input size",
    "dinov2": "torch-fidelity: TF1-compatible bilinear to 224x224",
}


def configured(p: Params) -> list[str]:
    """Every extractor the evaluation uses: the primary one first, each once."""
    from twostage.plan import extractor_names

    return extractor_names(p)


def weights_file(p: Params, name: str) -> str | None:
    """The local weights file declared for ``name`` (a DAG dependency), or None."""
    if not is_pretrained(name):
        return None  # e.g. the classifier's model.pt is its own DAG dependency
    return p["evaluation"]["weights"].get(name)


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


class TorchFidelityExtractor(Extractor):
    """A torch-fidelity feature extractor fed uint8 RGB tensors (grayscale repeated)."""

    def __init__(
        self,
        name: str,
        tf_name: str,
        layer: str,
        logits_layer: str | None,
        weights_path: str | None,
        device: torch.device,
    ):
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        self.name, self.device, self.layer, self.logits_layer = name, device, layer, logits_layer
        layers = [layer] + ([logits_layer] if logits_layer else [])
        cls = FEATURE_EXTRACTORS_REGISTRY[tf_name]
        self.model = cls(tf_name, layers, feature_extractor_weights_path=weights_path)
        self.model.to(device).eval()
        self.resize = _RESIZE.get(tf_name, _RESIZE.get(tf_name.split("-")[0], "torch-fidelity"))
        self.metric_key = "fid" if name == "inception" else f"fd_{name}"
        if weights_path is not None:
            self.weights_sha256 = file_sha256(weights_path)
        else:
            self.weights_sha256 = _downloaded_sha256(tf_name)

    @torch.no_grad()
    def _batch(self, images):
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out = dict(zip(self.model.features_list, self.model(x.to(self.device)), strict=True))
        return out[self.layer], out[self.logits_layer] if self.logits_layer else None


def _downloaded_sha256(tf_name: str) -> str | None:
    """sha256 of the file torch-fidelity downloaded into the torch hub cache, if one is there."""
    from torch_fidelity import feature_extractor_inceptionv3 as inc

    if tf_name != "inception-v3-compat":
        return None
    f = Path(torch.hub.get_dir(), "checkpoints", os.path.basename(inc.URL_INCEPTION_V3))
    return file_sha256(f) if f.is_file() else None


def _random_extractor(name: str, arch: str, seed: int, channels: int, device) -> Extractor:
    """A network with fixed-seed random weights: reproducible features from nothing."""
    if arch == "inception":
        state = random_inception_state_dict(seed)
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(state[key].numpy().tobytes())
        ext = TorchFidelityExtractor.__new__(TorchFidelityExtractor)
        ext.name, ext.device, ext.layer, ext.logits_layer = name, device, "2048", "logits_unbiased"
        ext.model = _inception_from_state(state, ["2048", "logits_unbiased"]).to(device)
        ext.resize, ext.metric_key = _RESIZE["inception-v3-compat"], f"fd_{name}"
        ext.weights_sha256 = digest.hexdigest()
        return ext
    from twostage.models.classifier import Classifier

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Classifier(channels, num_classes=10)
    return ClassifierExtractor(name, model, device, weights_sha256=f"random-init-seed-{seed}")


def _inception_from_state(state: dict, layers: list[str]) -> nn.Module:
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as inc

    # Building it normally would load (or download) the real weights first.
    with mock.patch.object(inc, "load_state_dict_from_url", lambda *a, **k: state):
        return inc.FeatureExtractorInceptionV3("inception-v3-compat", layers).eval()


def random_inception_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Inception weights of the right shapes, drawn with ``seed`` so activations keep their scale.

    He-normal convolutions with identity batch norms keep features O(1) through the depth
    (PyTorch's default init shrinks them towards zero); used by ``random-inception-<seed>``
    and by tests that exercise torch-fidelity's real weight-loading code.
    """
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as inc

    with (
        torch.random.fork_rng(),
        mock.patch.object(inc, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(inc.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None),
    ):
        torch.manual_seed(seed)
        model = inc.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=m.in_features**-0.5)
                nn.init.zeros_(m.bias)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _classifier(p: Params, match: re.Match, dataset: str, device) -> Extractor:
    from twostage.train.classifier import load_classifier

    model_file = paths.classifier(dataset)["model"]
    return ClassifierExtractor(
        match[0], load_classifier(dataset, device), device, file_sha256(model_file)
    )


def _random(p: Params, match: re.Match, dataset: str, device) -> Extractor:
    channels = p.dataset(dataset)["channels"]
    return _random_extractor(match[0], match[1], int(match[2]), channels, device)


def _torch_fidelity(tf_name: str | None, layer: str | None, logits_layer: str | None):
    """The builder of a torch-fidelity extractor: its registry name, feature layer and
    logits layer for the Inception Score (or None). ``tf_name`` and ``layer`` None: the
    extractor's own name, and one feature named after its family (torch-fidelity's
    clip-* and dinov2-*)."""

    def build_it(p: Params, match: re.Match, dataset: str, device) -> Extractor:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        name = match[0]
        tf, feature = tf_name or name, layer or name.split("-")[0]
        if tf not in FEATURE_EXTRACTORS_REGISTRY:
            _unknown(name)
        return _pretrained_torch_fidelity(p, name, tf, feature, logits_layer, device)

    return build_it


@dataclass(frozen=True)
class Registration:
    """One family of extractor names.

    ``pattern``: the names it serves (a full match; its groups go to ``build``);
    ``build(p, match, dataset, device) -> Extractor``, a ConfigError when it cannot;
    ``pretrained``: needs pretrained weights (a local file ``evaluation.weights.<name>``, or
    a download when ``evaluation.allow_download`` is true);
    ``shown``: how the family is listed when a name is unknown ("" for torch-fidelity's
    clip-* and dinov2-*, listed from torch-fidelity's own registry).
    """

    pattern: str
    build: Callable[[Params, re.Match, str, torch.device], Extractor]
    pretrained: bool
    shown: str


# The extractor registry: adding an extractor is one entry here (and its own module).
REGISTRY = (
    Registration("classifier", _classifier, pretrained=False, shown="classifier"),
    Registration(
        "inception",
        _torch_fidelity("inception-v3-compat", "2048", "logits_unbiased"),
        pretrained=True,
        shown="inception",
    ),
    Registration(
        "vgg16", _torch_fidelity("vgg16", "fc2_relu", None), pretrained=True, shown="vgg16"
    ),
    Registration(
        r"(?:clip|dinov2)-[a-z0-9-]+", _torch_fidelity(None, None, None), pretrained=True, shown=""
    ),
    Registration(
        r"random-(classifier|inception)-(\d+)",
        _random,
        pretrained=False,
        shown="random-<classifier|inception>-<seed>",
    ),
)


def _lookup(name: str) -> tuple[Registration, re.Match] | None:
    for entry in REGISTRY:
        if match := re.fullmatch(entry.pattern, name):
            return entry, match
    return None


def _unknown(name: str):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    known = [entry.shown for entry in REGISTRY if entry.shown]
    known += sorted(k for k in FEATURE_EXTRACTORS_REGISTRY if k.startswith(("clip", "dinov2")))
    raise ConfigError(
        f"{EVAL_FILE}: evaluation.extractor: unknown extractor {name!r} (known: {', '.join(known)})"
    )


def is_pretrained(name: str) -> bool:
    """Whether ``name`` needs pretrained weights (from a local file or a download)."""
    found = _lookup(name)
    return found is not None and found[0].pretrained


def build(p: Params, name: str, dataset: str, device: torch.device) -> Extractor:
    """The extractor ``name`` for ``dataset``; a ConfigError says which weights file is missing."""
    found = _lookup(name)
    if found is None:
        _unknown(name)
    entry, match = found
    return entry.build(p, match, dataset, device)


def _pretrained_torch_fidelity(
    p: Params, name: str, tf_name: str, layer: str, logits_layer: str | None, device
) -> Extractor:
    allow_download = p["evaluation"]["allow_download"]
    if tf_name.startswith("dinov2") and not allow_download:
        # torch-fidelity 0.4.0 builds DINOv2 only through torch.hub (code + weights).
        raise ConfigError(
            f"{EVAL_FILE}: evaluation.extractor: {name} cannot load from a local file with "
            "torch-fidelity 0.4.0 (it needs torch.hub): set evaluation.allow_download: true"
        )
    path = weights_file(p, name)
    if path is not None and Path(path).is_file():
        return TorchFidelityExtractor(name, tf_name, layer, logits_layer, path, device)
    if allow_download:
        return TorchFidelityExtractor(name, tf_name, layer, logits_layer, None, device)
    wanted = path or f"resources/weights/{tf_name}.pth"
    raise ConfigError(
        f"{EVAL_FILE}: evaluation.weights.{name}: weights file {wanted} not found; provide it "
        f"(a state dict, DVC-tracked under resources/weights/), set evaluation.weights.{name} "
        "to its path, or set evaluation.allow_download: true where the network is reachable"
    )
