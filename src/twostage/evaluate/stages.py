"""Evaluation stages: score a sampling run, and the calibration rows of an autoencoder."""

from __future__ import annotations

import numpy as np
import torch

from twostage import paths
from twostage.artifacts import load_npy, write_json
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.evaluate import cache, extractors, sampling_intervals
from twostage.evaluate.conditional import class_scores
from twostage.evaluate.protocol import kid_and_is, metric_key, real_subset, score, score_extra
from twostage.images import save_grid, tiles, to_tensor, to_uint8
from twostage.models.autoencoders import is_continuous, load_autoencoder
from twostage.runtime import pick_device


def evaluate_run(p: Params, run: str) -> dict:
    """The primary extractor's FD + PRDC (+ KID), then one block per extra extractor.

    Keys: ``fid`` / ``fd_<name>``, PRDC, ``kid_*``, ``inception_score_*``; the primary
    block's protocol is ``protocol``, an extra extractor's is ``protocol_<name>``.
    A class-conditional run adds the classifier's accuracy on the classes asked for and
    the per-class FD (evaluate/conditional.py).
    """
    dataset = p.dataset_of_autoencoder(p.autoencoder_of_prior(p.prior_of_run(run)))
    device = pick_device(p["device"])
    ev = p["evaluation"]
    images = load_npy(paths.samples(run)["images"], ndim=4, kinds="u")
    images = tiles(images, p["datasets"][dataset]["resolution"])  # a larger grid's: its tiles
    metrics: dict = {}
    for i, name in enumerate(extractors.configured(p)):
        extractor = extractors.build(p, name, dataset, device)
        fake = extractor.embed(images)
        real = cache.load_train_features(p, dataset, extractor)
        if i == 0:
            block = score(fake.features, real, name, ev["nearest_k"], p["seed"], extractor.info())
            values, protocol = kid_and_is(fake.features, real, name, p["seed"], fake.logits)
            block.update(values)
            block["protocol"].update(protocol)
            metrics.update(block)
            # What the draw of the samples alone moves the scores by (a nested block: the
            # report reads it for runs without replicates; it is no column of its own).
            prdc_real = real_subset(real, len(fake.features), p["seed"])
            metrics["sampling_intervals"] = sampling_intervals.intervals(
                fake.features, real, prdc_real, metric_key(name), ev["nearest_k"], p["seed"]
            )
            if p.prior(p.prior_of_run(run))["condition"] == "class":
                scores = _conditional_scores(
                    dataset, run, images, fake.features, real, name, device, p
                )
                metrics.update(scores)
        else:
            block = score_extra(fake.features, real, name, extractor.info(), p["seed"], fake.logits)
            metrics[f"protocol_{name}"] = block.pop("protocol")
            metrics.update(block)
    write_json(paths.evaluation(run)["metrics"], metrics)
    return metrics


@torch.no_grad()
def _conditional_scores(dataset, run, images, fake, real, name, device, p) -> dict:
    """The dataset's classifier on the samples, and per-class FD and PRDC under ``name``."""
    from twostage.models.classifier import load_classifier

    asked = load_npy(paths.samples(run)["classes"], ndim=1, kinds="i")
    classifier = load_classifier(paths.classifier(dataset)["model"], device)
    predicted = np.concatenate(
        [
            classifier(to_tensor(images[i : i + 500], device)).argmax(1).cpu().numpy()
            for i in range(0, len(images), 500)
        ]
    )
    real_labels = load_split(dataset, "train")[1]
    nearest_k = p["evaluation"]["nearest_k"]
    return class_scores(fake, asked, predicted, real, real_labels, name, nearest_k, p["seed"])


@torch.no_grad()
def decode_random_tokens(ae, n: int, seed: int, device: torch.device) -> np.ndarray:
    """Images decoded from uniformly random code grids: what a prior that learned nothing gives."""
    gen = torch.Generator().manual_seed(seed)
    side, k = ae.token_side, ae.quantizer.codebook_size
    out = []
    for start in range(0, n, 250):
        b = min(250, n - start)
        tokens = torch.randint(0, k, (b, side, side), generator=gen).to(device)
        out.append(to_uint8(ae.decode(tokens)))
    return np.concatenate(out)


@torch.no_grad()
def decode_standard_normal(ae, n: int, seed: int, device: torch.device) -> np.ndarray:
    """Images decoded from N(0, I) latents: a continuous autoencoder with a prior that
    knows nothing of its latents (for a VAE this is its own prior)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, ae.latent_dim, generator=gen)
    return np.concatenate(
        [to_uint8(ae.decode(z[i : i + 250].to(device))) for i in range(0, n, 250)]
    )


def calibrate(p: Params, ae_name: str) -> dict:
    """Two reference rows for every table: the floor (real val vs train) and a bad model."""
    dataset = p.dataset_of_autoencoder(ae_name)
    device = pick_device(p["device"])
    ev, ext = p["evaluation"], p["evaluation"]["extractor"]
    extractor = extractors.build(p, ext, dataset, device)
    real_train = cache.load_train_features(p, dataset, extractor)
    real_val = load_npy(paths.features(dataset, ext)["val"], ndim=2, kinds="f")[: ev["n_samples"]]
    ae = load_autoencoder(paths.autoencoder(ae_name)["model"], device, p.autoencoder(ae_name))
    if is_continuous(p.autoencoder(ae_name)):  # no tokens: decode N(0, I) latents instead
        random_images = decode_standard_normal(ae, ev["n_samples"], p["seed"], device)
    else:
        random_images = decode_random_tokens(ae, ev["n_samples"], p["seed"], device)
    random_feats = extractor(random_images)
    out = paths.calibration(ae_name)
    save_grid(out["grid"], random_images[:64], ncol=8)
    info = extractor.info()
    metrics = {
        "real_val_vs_train": score(real_val, real_train, ext, ev["nearest_k"], p["seed"], info),
        "random_tokens": score(random_feats, real_train, ext, ev["nearest_k"], p["seed"], info),
    }
    write_json(out["metrics"], metrics)
    return metrics
