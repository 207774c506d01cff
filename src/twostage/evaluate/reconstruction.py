"""Stage-1 reconstruction evaluation (Table 4.5; docs/methods.md) and codebook health.

Every validation image goes through the trained autoencoder; the metrics are
pixel MSE / PSNR on the saved uint8 scale, LPIPS-VGG when its backbone is
available offline (else null, with the reason), the Fréchet distance between
reconstructions and originals under the evaluation feature extractor, and the
codebook's used-code count and perplexity, with a usage plot and a grid of
originals above their reconstructions.

The same reconstructions also give the stage-1 ceiling (``decoded_val_vs_train``):
scored by the protocol's :func:`score` exactly like the calibration floor (the first
``evaluation.n_samples`` validation images against the training features), so the two
rows differ only by the autoencoder: what stage 1 costs before any prior is involved.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from twostage import paths  # noqa: E402
from twostage.artifacts import atomic_path, load_npy, write_json  # noqa: E402
from twostage.config import Params  # noqa: E402
from twostage.data.prepare import load_split  # noqa: E402
from twostage.evaluate.cache import load_train_features  # noqa: E402
from twostage.evaluate.features import primary_extractor  # noqa: E402
from twostage.evaluate.frechet import frechet_distance_from_features  # noqa: E402
from twostage.evaluate.protocol import score  # noqa: E402
from twostage.images import save_grid, to_tensor, to_uint8  # noqa: E402
from twostage.models.autoencoders import is_continuous, load_autoencoder  # noqa: E402
from twostage.models.autoencoders.perceptual import (  # noqa: E402
    backbone_problem,
    load_perceptual,
)
from twostage.models.autoencoders.quantizers import codebook_stats  # noqa: E402
from twostage.runtime import pick_device  # noqa: E402


@torch.no_grad()
def reconstruct(
    ae, images: np.ndarray, device: torch.device, batch_size: int = 250
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 reconstructions of ``images`` (N×H×W×C) and their latents (code grids N×h×w)."""
    recons, codes = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="reconstruct", mininterval=5):
        x = to_tensor(images[start : start + batch_size], device)
        idx = ae.encode(x)
        recons.append(to_uint8(ae.decode(idx)))
        codes.append(idx.cpu().numpy())
    return np.concatenate(recons), np.concatenate(codes)


def pixel_errors(originals: np.ndarray, recons: np.ndarray) -> dict[str, float]:
    """MSE on the [0, 1] scale and PSNR = 10 log10(1 / MSE) over all pixels."""
    diff = originals.astype(np.float64) / 255 - recons.astype(np.float64) / 255
    mse = float(np.mean(diff**2))
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}


@torch.no_grad()
def mean_lpips(
    perceptual, originals: np.ndarray, recons: np.ndarray, device: torch.device, batch_size=50
) -> float:
    total = 0.0
    for start in tqdm(range(0, len(originals), batch_size), desc="lpips", mininterval=5):
        x = to_tensor(originals[start : start + batch_size], device)
        y = to_tensor(recons[start : start + batch_size], device)
        total += float(perceptual(x, y).sum())
    return total / len(originals)


def _save_bar_plot(path: str, heights: np.ndarray, xlabel: str, ylabel: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.bar(np.arange(len(heights)), heights, width=1.0, color="tab:blue")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def save_usage_plot(path: str, indices: np.ndarray, codebook_size: int) -> None:
    """Code frequencies, most used first: a collapsed codebook shows as a short head."""
    counts = np.bincount(indices.ravel(), minlength=codebook_size)
    title = f"{int((counts > 0).sum())} of {codebook_size} codes used"
    _save_bar_plot(
        path, np.sort(counts)[::-1] / counts.sum(), "code rank", "fraction of tokens", title
    )


def save_latent_plot(path: str, latents: np.ndarray) -> None:
    """Per-dimension spread of continuous latents: dead dimensions show as near-zero bars."""
    std = latents.reshape(len(latents), -1).std(axis=0)
    title = f"{int((std > 0.01).sum())} of {len(std)} dimensions active"
    _save_bar_plot(path, std, "latent dimension", "std over validation images", title)


def save_pairs_grid(path: str, originals: np.ndarray, recons: np.ndarray, n: int = 32) -> None:
    """Rows of 8 originals, each above its row of reconstructions (evenly spaced picks)."""
    pick = np.linspace(0, len(originals) - 1, min(n, len(originals))).astype(int)
    rows = [
        np.concatenate([originals[pick[i : i + 8]], recons[pick[i : i + 8]]])
        for i in range(0, len(pick), 8)
    ]
    save_grid(path, np.concatenate(rows), ncol=min(8, len(pick)))


def stage1_ceiling(p: Params, dataset: str, extractor, recon_features: np.ndarray) -> dict:
    """FD + PRDC of the reconstructed validation images against the training features.

    The calibration floor scores the first ``n_samples`` real validation images; these
    are the reconstructions of the same images, under the same protocol.
    """
    ev = p["evaluation"]
    return score(
        recon_features[: ev["n_samples"]],
        load_train_features(p, dataset, extractor),
        extractor.name,
        ev["nearest_k"],
        p["seed"],
        extractor.info(),
    )


def evaluate_reconstruction(p: Params, ae_name: str) -> dict:
    spec = p.autoencoder(ae_name)
    dataset = p.dataset_of_autoencoder(ae_name)
    device = pick_device(p["device"])
    ae = load_autoencoder(paths.autoencoder(ae_name)["model"], device, spec)
    originals, _ = load_split(dataset, "val")
    recons, indices = reconstruct(ae, originals, device)

    metrics: dict = pixel_errors(originals, recons)
    problem = backbone_problem(spec, ae_name)
    if problem is None:
        metrics["lpips"] = mean_lpips(
            load_perceptual(spec, ae_name).to(device), originals, recons, device
        )
    else:  # a metric, not a requirement: record why it is missing
        metrics["lpips"], metrics["lpips_unavailable"] = None, problem
    extractor = primary_extractor(p, dataset, device)
    real = load_npy(paths.features(dataset, extractor.name)["val"], ndim=2, kinds="f")
    recon_features = extractor(recons)
    metrics[extractor.metric_key] = frechet_distance_from_features(recon_features, real)
    metrics["decoded_val_vs_train"] = stage1_ceiling(p, dataset, extractor, recon_features)
    metrics["n_images"] = len(originals)
    out = paths.reconstruction(ae_name)
    if is_continuous(spec):  # latent vectors, no codebook: the usage plot says so
        save_latent_plot(out["usage"], indices)
    else:
        k = ae.quantizer.codebook_size
        stats = codebook_stats(torch.from_numpy(indices), k)
        metrics.update(
            used_codes=stats["codebook_used"],
            perplexity=stats["codebook_perplexity"],
            codebook_size=k,
        )
        save_usage_plot(out["usage"], indices, k)
    save_pairs_grid(out["grid"], originals, recons)
    write_json(out["metrics"], metrics)
    return metrics
