"""Nearest training images of generated samples, and the memorization check (sec. 4.2.6).

Every image is embedded once and neighbours are found by a chunked search over the
embeddings, never by one network call per (sample, training image) pair. That works
for LPIPS too: with unit-normalised channel features f̂_l of layer l (H_l×W_l) and the
non-negative learned channel weights w_l,

    LPIPS(x, y) = Σ_l 1/(H_l W_l) Σ_hw Σ_c w_lc (f̂_lchw(x) - f̂_lchw(y))²  =  ||e(x) - e(y)||²

with e_l = sqrt(w_l / (H_l W_l)) · f̂_l flattened: a squared Euclidean distance.

Three distances: LPIPS (AlexNet; needs the backbone from a local file, else skipped
with the reason recorded), the workflow classifier's features, and pixel L2.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from twostage import paths
from twostage.artifacts import atomic_path, file_sha256, load_npy, write_json
from twostage.config import ConfigError, Params
from twostage.data.prepare import load_split
from twostage.evaluate.extractors.base import EVAL_FILE
from twostage.evaluate.extractors.classifier import ClassifierExtractor
from twostage.images import grid, save_grid, save_png, tiles, to_tensor
from twostage.models.classifier import load_classifier
from twostage.runtime import pick_device

log = logging.getLogger(__name__)

# torchvision AlexNet `features` layer index → the lpips slice holding it.
_ALEX_SLICES = [
    (1, range(0, 2)),
    (2, range(2, 5)),
    (3, range(5, 8)),
    (4, range(8, 10)),
    (5, range(10, 12)),
]


class LpipsEmbedding:
    """LPIPS (AlexNet, v0.1) as an embedding whose squared distances are LPIPS values."""

    def __init__(self, backbone: str | Path | None, device: torch.device | str = "cpu"):
        """``backbone``: a torchvision AlexNet state dict; None = the random backbone
        lpips builds offline (tests only: not a perceptual metric)."""
        import lpips

        # pnet_rand: never let torchvision download the backbone; the small linear
        # layers (the learned part of LPIPS) ship inside the lpips wheel.
        self.net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
        if backbone is not None:
            load_alexnet_backbone(self.net.net, backbone)
        self.net.to(device)
        self.device = torch.device(device)
        self._normalize = lpips.normalize_tensor

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        out = []
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[start : start + batch_size], self.device)
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            feats = self.net.net(self.net.scaling_layer(x))
            parts = []
            for lin, f in zip(self.net.lins, feats, strict=True):
                w = lin.model[-1].weight.view(1, -1, 1, 1)  # 1×C×1×1, learned ≥ 0
                scale = (w.clamp(min=0) / (f.shape[2] * f.shape[3])).sqrt()
                parts.append((self._normalize(f) * scale).flatten(1))
            out.append(torch.cat(parts, dim=1).double().cpu())
        return torch.cat(out)


def load_alexnet_backbone(alexnet: torch.nn.Module, path: str | Path) -> None:
    """Copy a torchvision AlexNet state dict's conv layers into lpips' sliced AlexNet."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    mapped = {}
    for slice_no, layers in _ALEX_SLICES:
        for i in layers:
            for param in ("weight", "bias"):
                if f"features.{i}.{param}" in state:
                    mapped[f"slice{slice_no}.{i}.{param}"] = state[f"features.{i}.{param}"]
    try:
        alexnet.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"{EVAL_FILE}: evaluation.weights.lpips_alex: {path} is not a torchvision AlexNet "
            f"state dict ({str(exc).splitlines()[0]})"
        ) from None


def pixel_embedding(images: np.ndarray) -> torch.Tensor:
    """Pixels in [0, 1] as vectors: Euclidean distance = pixel L2."""
    return torch.from_numpy(images.reshape(len(images), -1)).double() / 255.0


def nearest(
    queries: torch.Tensor, keys: torch.Tensor, k: int, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared Euclidean distances and indices of the ``k`` nearest keys of every query.

    Keys are searched ``chunk_size`` rows at a time, so memory is O(queries × chunk).
    """
    q = queries.double()
    qq = (q * q).sum(1, keepdim=True)
    best_d = torch.empty(len(q), 0, dtype=torch.float64)
    best_i = torch.empty(len(q), 0, dtype=torch.int64)
    for start in range(0, len(keys), chunk_size):
        block = keys[start : start + chunk_size].double()
        d = (qq + (block * block).sum(1)[None, :] - 2 * q @ block.T).clamp_(min=0)
        idx = torch.arange(start, start + len(block)).expand(len(q), -1)
        best_d, order = torch.cat([best_d, d], 1).topk(
            min(k, best_d.shape[1] + len(block)), 1, largest=False
        )
        best_i = torch.cat([best_i, idx], 1).gather(1, order)
    return best_d, best_i


def memorization(sample_nn: np.ndarray, val_nn: np.ndarray) -> dict:
    """Sample→train nearest distances against the val→train baseline.

    A sample closer to a training image than *any* validation image is (held-out data
    from the same distribution) is a copy candidate.
    """

    def summary(d: np.ndarray) -> dict:
        q = np.quantile(d, [0.01, 0.5])
        return {"n": len(d), "min": float(d.min()), "p01": float(q[0]), "median": float(q[1])}

    threshold = float(val_nn.min())
    flagged = np.flatnonzero(sample_nn < threshold)
    return {
        "samples_to_train": summary(sample_nn),
        "val_to_train": summary(val_nn),
        "fraction_closer_than_any_val": float(len(flagged) / len(sample_nn)),
        "fraction_below_val_p01": float(np.mean(sample_nn < np.quantile(val_nn, 0.01))),
        "flagged": flagged.tolist(),
    }


def _embeddings(p: Params, dataset: str, device, lpips_file: str | None) -> tuple[dict, dict]:
    """Name → embedding function, and why any distance was skipped."""
    model = load_classifier(paths.classifier(dataset)["model"], device)
    classifier = ClassifierExtractor("classifier", model, device, weights_sha256=None)
    funcs = {
        "classifier": lambda im: torch.from_numpy(classifier(im)),
        "pixel_l2": pixel_embedding,
    }
    skipped = {}
    if lpips_file is None:
        skipped["lpips"] = f"{EVAL_FILE}: evaluation.weights.lpips_alex is not set"
    elif not Path(lpips_file).is_file():
        skipped["lpips"] = f"AlexNet backbone {lpips_file} not found"
    else:
        funcs = {"lpips": LpipsEmbedding(lpips_file, device), **funcs}
    return funcs, skipped


def nearest_neighbours(p: Params, run: str) -> dict:
    """Neighbour grids, memorization statistics and flagged samples of one run."""
    dataset = p.dataset_of_autoencoder(p.autoencoder_of_prior(p.prior_of_run(run)))
    cfg, device = p["evaluation"]["neighbours"], pick_device(p["device"])
    samples = load_npy(paths.samples(run)["images"], ndim=4, kinds="u")
    train, _ = load_split(dataset, "train")
    samples = tiles(samples, train.shape[1])  # a larger grid's images: their tiles
    val = load_split(dataset, "val")[0][: cfg["n_val"]]
    lpips_file = p["evaluation"]["weights"].get("lpips_alex")
    funcs, skipped = _embeddings(p, dataset, device, lpips_file)

    results, shown, raw = {}, {}, {}
    for name, embed in tqdm(funcs.items(), desc="nearest neighbours", leave=False):
        train_e = embed(train)  # each training image embedded once for every query
        d_s, i_s = nearest(embed(samples), train_e, cfg["k"], cfg["chunk_size"])
        d_v, _ = nearest(embed(val), train_e, 1, cfg["chunk_size"])
        # LPIPS *is* the squared distance; the others are reported as Euclidean.
        to_dist = (lambda d: d) if name == "lpips" else torch.sqrt
        d_s, d_v = to_dist(d_s).numpy(), to_dist(d_v[:, 0]).numpy()
        i_s = i_s.numpy()
        results[name] = memorization(d_s[:, 0], d_v)
        raw[name] = (d_s[:, 0], d_v, i_s[:, 0])
        n = min(cfg["n_samples"], len(samples))
        shown[name] = i_s[:n]
        results[name]["neighbours"] = {
            "sample_index": list(range(n)),
            "train_index": i_s[:n].tolist(),
            "distance": d_s[:n].tolist(),
        }

    primary = next(iter(funcs))  # lpips when available, else the classifier
    out = paths.neighbours(run)
    _save_neighbour_grid(out["grid"], samples, train, shown)
    _save_flagged(out["flagged"], samples, train, results[primary]["flagged"], raw[primary])
    _save_histograms(out["histogram"], results, raw)
    metrics = {
        "primary_distance": primary,
        **results,
        "skipped": skipped,
        "protocol": {
            "n_samples": len(samples),
            "n_train": len(train),
            "n_val": len(val),
            "k": cfg["k"],
            "lpips_backbone_sha256": file_sha256(lpips_file) if "lpips" in funcs else None,
            "classifier_sha256": file_sha256(paths.classifier(dataset)["model"]),
            "resize": "none (native resolution)",
        },
    }
    write_json(out["metrics"], metrics)
    return {k: v["fraction_closer_than_any_val"] for k, v in results.items()}


def _save_neighbour_grid(path, samples, train, shown) -> None:
    """One row per (distance, sample): the sample, then its k nearest training images."""
    rows = [
        np.concatenate([samples[j : j + 1], train[idx[j]]])
        for idx in shown.values()
        for j in range(len(idx))
    ]
    save_grid(path, np.concatenate(rows), ncol=len(rows[0]))


def _save_flagged(path, samples, train, flagged: list[int], raw) -> None:
    """Flagged samples beside their nearest training image; if none, the 8 closest pairs."""
    sample_nn, _, nn_index = raw
    order = flagged[:32] if flagged else np.argsort(sample_nn)[:8].tolist()
    pairs = [im for j in order for im in (samples[j], train[nn_index[j]])]
    save_png(path, grid(np.stack(pairs), ncol=8), scale=2)


def _save_histograms(path, results, raw) -> None:
    """Sample→train against val→train nearest distances, one panel per distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(raw), figsize=(4 * len(raw), 3), squeeze=False)
    for ax, (name, (s, v, _)) in zip(axes[0], raw.items(), strict=True):
        bins = np.histogram_bin_edges(np.concatenate([s, v]), bins=30)
        ax.hist(v, bins=bins, alpha=0.6, density=True, label="val → train")
        ax.hist(s, bins=bins, alpha=0.6, density=True, label="sample → train")
        frac = results[name]["fraction_closer_than_any_val"]
        ax.set_title(f"{name}: {frac:.1%} closer than any val", fontsize=9)
        ax.set_xlabel("distance to nearest training image")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
