"""Scores of a class-conditional run: are the samples of the classes asked for, and how
close is each class's sample to the real images of that class.

- ``class_accuracy``: the fraction of samples the dataset's classifier (the one trained
  for the evaluation features) puts in the class the sample was asked for;
- ``<fd>_class_mean`` / ``<fd>_class_worst``: the Fréchet distance between the samples
  asked for class c and the training images of class c, averaged over the classes
  drawn, and the largest of them (``per_class``: each class's value).
"""

from __future__ import annotations

import numpy as np

from twostage.evaluate.protocol import frechet, metric_key


def class_scores(
    fake: np.ndarray,
    asked: np.ndarray,
    predicted: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    extractor: str,
) -> dict:
    """Accuracy of ``predicted`` against ``asked``, and per-class FD of ``fake`` (features)
    against the ``real`` features of the same class."""
    key = metric_key(extractor)
    per_class = {}
    for c in np.unique(asked):
        ours, theirs = fake[asked == c], real[real_labels == c]
        if len(ours) < 2 or len(theirs) < 2:
            raise ValueError(
                f"class {c}: {len(ours)} samples and {len(theirs)} real images; a Fréchet "
                "distance needs at least 2 of each (raise evaluation.n_samples)"
            )
        per_class[str(int(c))] = frechet(ours, theirs, extractor)
    values = list(per_class.values())
    return {
        "class_accuracy": float(np.mean(predicted == asked)),
        f"{key}_class_mean": float(np.mean(values)),
        f"{key}_class_worst": float(np.max(values)),
        "per_class": {key: per_class},
    }
