"""``random-<arch>-<seed>`` (arch ``classifier`` or ``inception``): a network with
fixed-seed random weights, the extractor that needs nothing at all."""

from __future__ import annotations

import hashlib
import re

import torch
from torch import nn

from twostage.config import Params
from twostage.evaluate.extractors.base import Extractor
from twostage.evaluate.extractors.classifier import ClassifierExtractor
from twostage.evaluate.extractors.torch_fidelity import RESIZE, TorchFidelityExtractor
from twostage.models.classifier import Classifier

INCEPTION_LAYERS = ["2048", "logits_unbiased"]


def build_random(p: Params, match: re.Match, dataset: str, device) -> Extractor:
    name, arch, seed = match[0], match[1], int(match[2])
    if arch == "inception":
        state = random_inception_state_dict(seed)
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(state[key].numpy().tobytes())
        model = _inception_from_state(state, INCEPTION_LAYERS)
        resize = RESIZE["inception-v3-compat"]
        return TorchFidelityExtractor(
            name, model, *INCEPTION_LAYERS, resize, digest.hexdigest(), device
        )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Classifier(p.dataset(dataset)["channels"], num_classes=10)
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
