"""The feature-extractor registry (``REGISTRY``): a name in params → a network that embeds
uint8 images. One module per family of names:

- ``inception``, ``vgg16``, ``clip-<model>``, ``dinov2-<model>`` (torch.hub only; e.g.
  ``dinov2-vit-s-14``): torch-fidelity's pretrained extractors (``torch_fidelity.py``);
  ``inception`` gives 2048-D pool features (metric ``fid``, comparable to papers) and its
  unbiased logits for the Inception Score, the others metric ``fd_<name>``;
- ``classifier``: the penultimate layer of the CNN the workflow trains on the dataset's
  labels (``classifier.py``);
- ``random-<arch>-<seed>`` (arch ``classifier`` or ``inception``): a fixed-seed random
  network, the extractor that needs nothing at all (``random_weights.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from twostage.config import ConfigError, Params
from twostage.evaluate.extractors.base import EVAL_FILE, Embedding, Extractor, UnknownExtractor
from twostage.evaluate.extractors.classifier import build_trained
from twostage.evaluate.extractors.random_weights import build_random
from twostage.evaluate.extractors.torch_fidelity import builder as torch_fidelity

__all__ = ["EVAL_FILE", "REGISTRY", "Embedding", "Extractor", "Registration", "build"]


def configured(p: Params) -> list[str]:
    """Every extractor the evaluation uses: the primary one first, each once."""
    from twostage.plan import extractor_names

    return extractor_names(p)


def weights_file(p: Params, name: str) -> str | None:
    """The local weights file declared for ``name`` (a DAG dependency), or None."""
    if not is_pretrained(name):
        return None  # e.g. the classifier's model.pt is its own DAG dependency
    return p["evaluation"]["weights"].get(name)


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
    Registration("classifier", build_trained, pretrained=False, shown="classifier"),
    Registration(
        "inception",
        torch_fidelity("inception-v3-compat", "2048", "logits_unbiased"),
        pretrained=True,
        shown="inception",
    ),
    Registration(
        "vgg16", torch_fidelity("vgg16", "fc2_relu", None), pretrained=True, shown="vgg16"
    ),
    Registration(
        r"(?:clip|dinov2)-[a-z0-9-]+", torch_fidelity(None, None, None), pretrained=True, shown=""
    ),
    Registration(
        r"random-(classifier|inception)-(\d+)",
        build_random,
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
    try:
        return entry.build(p, match, dataset, device)
    except UnknownExtractor:
        _unknown(name)
