"""LPIPS (VGG) perceptual loss and metric, without any download unless params allow it.

The ``lpips`` wheel ships only its small linear heads; the VGG16 backbone is
normally fetched by torchvision. Here it comes from the local file named by
``perceptual_weights`` (torchvision's ``vgg16-397923af.pth`` state dict, or
just its ``features`` part), and the download happens only with
``allow_download: true``. Otherwise a ConfigError names the file to provide.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from twostage.config import ConfigError

PARAMS_FILE = "params/autoencoders.yaml"
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's name for the ImageNet VGG16 weights


class Perceptual(nn.Module):
    """LPIPS distance per image for B×C×H×W inputs in [-1, 1] (grey images repeated to RGB)."""

    def __init__(self, lpips_model: nn.Module):
        super().__init__()
        self.lpips = lpips_model.eval()
        for p in self.lpips.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> Perceptual:
        return super().train(False)  # frozen: dropout off, always

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.size(1) == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.lpips(x, y).flatten()


def backbone_problem(spec: dict, name: str) -> str | None:
    """Why the VGG backbone cannot be had offline for this autoencoder, or None if it can."""
    where = f"{PARAMS_FILE}: autoencoders.{name}.perceptual_weights"
    path = spec.get("perceptual_weights")
    if path is None:
        if spec.get("allow_download"):  # a continuous autoencoder's entry has no such key
            return None
        return (
            f"{where}: not set; provide torchvision's VGG16 weights ({VGG16_FILE}) as a "
            "local file, e.g. resources/weights/vgg16.pth, or set allow_download: true"
        )
    if not Path(path).is_file():
        return (
            f"{where}: file {path!r} not found; "
            f"put torchvision's VGG16 weights ({VGG16_FILE}) there"
        )
    return None


def load_perceptual(spec: dict, name: str) -> Perceptual:
    """LPIPS-VGG with the backbone from ``perceptual_weights`` (or a permitted download)."""
    problem = backbone_problem(spec, name)
    if problem is not None:
        raise ConfigError(problem)
    import lpips  # heavy import, only when a perceptual term is wanted

    path = spec.get("perceptual_weights")
    with warnings.catch_warnings():
        # lpips 0.1.4 still calls torchvision's deprecated `pretrained=` argument.
        warnings.simplefilter("ignore", UserWarning)
        # pnet_rand=True builds the backbone without fetching it; the heads load from the wheel.
        model = lpips.LPIPS(net="vgg", pnet_rand=path is not None, verbose=False)
    if path is not None:
        _load_vgg_features(model.net, path, name)
    return Perceptual(model)


def _load_vgg_features(net: nn.Module, path: str, name: str) -> None:
    """Copy VGG16 ``features.<i>`` weights into lpips' slice1..slice5 (which keep index i)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the same user error
        raise ConfigError(
            f"{PARAMS_FILE}: autoencoders.{name}.perceptual_weights: cannot read {path!r}: {exc}"
        ) from None
    slice_of = {
        index: slice_name
        for slice_name, block in net.named_children()
        for index, _ in block.named_children()
    }
    mapped = {}
    for key, value in state.items():
        key = key.removeprefix("features.")
        index, _, rest = key.partition(".")
        if index in slice_of:
            mapped[f"{slice_of[index]}.{index}.{rest}"] = value
    missing = sorted(set(net.state_dict()) - set(mapped))
    if missing:
        raise ConfigError(
            f"{PARAMS_FILE}: autoencoders.{name}.perceptual_weights: {path!r} is not a VGG16 "
            f"state dict (missing e.g. features.{missing[0].split('.', 1)[1]})"
        )
    net.load_state_dict(mapped)
