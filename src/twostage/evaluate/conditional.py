"""Scores of a class-conditional run: are the samples of the classes asked for, and how
close is each class's sample to the real images of that class.

- ``class_accuracy``: the fraction of samples the dataset's classifier (the one trained
  for the evaluation features) puts in the class the sample was asked for;
- ``<fd>_class_mean`` / ``<fd>_class_worst``: the Fréchet distance between the samples
  asked for class c and the training images of class c, averaged over the classes
  drawn, and the largest of them (``per_class``: each class's value);
- ``precision`` / ``recall`` / ``density`` / ``coverage`` ``_class_mean`` and
  ``_class_worst``: PRDC of class c's samples against an equal-sized subset of class c's
  training images, as the unconditional protocol takes them; the worst class is the lowest
  value, for density the one farthest from 1 (a model matching the data gives ≈ 1).
"""

from __future__ import annotations

import numpy as np

from twostage.evaluate.prdc import compute_prdc
from twostage.evaluate.protocol import frechet, metric_key, real_subset

PRDC = ("precision", "recall", "density", "coverage")


def class_scores(
    fake: np.ndarray,
    asked: np.ndarray,
    predicted: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    extractor: str,
    nearest_k: int,
    seed: int,
) -> dict:
    """Accuracy of ``predicted`` against ``asked``, and per-class FD and PRDC of ``fake``
    (features) against the ``real`` features of the same class."""
    key = metric_key(extractor)
    per_class: dict[str, dict[str, float]] = {m: {} for m in (key, *PRDC)}
    for c in np.unique(asked):
        ours, theirs = fake[asked == c], real[real_labels == c]
        if len(ours) <= nearest_k or len(theirs) <= nearest_k:
            raise ValueError(
                f"class {c}: {len(ours)} samples and {len(theirs)} real images; per-class "
                f"FD and PRDC need more than nearest_k = {nearest_k} of each (raise "
                "evaluation.n_samples)"
            )
        per_class[key][str(int(c))] = frechet(ours, theirs, extractor)
        prdc = compute_prdc(real_subset(theirs, len(ours), seed), ours, nearest_k=nearest_k)
        for m in PRDC:
            per_class[m][str(int(c))] = prdc[m]
    out = {"class_accuracy": float(np.mean(predicted == asked))}
    for m, values in per_class.items():
        v = np.array(list(values.values()))
        out[f"{m}_class_mean"] = float(v.mean())
        if m == key:
            out[f"{m}_class_worst"] = float(v.max())
        elif m == "density":
            out[f"{m}_class_worst"] = float(v[np.argmax(np.abs(v - 1))])
        else:
            out[f"{m}_class_worst"] = float(v.min())
    out["per_class"] = per_class
    return out
