"""A claim's verdict from its per-seed estimates: pure arithmetic, no files.

A claim says that an estimate (the difference or ratio of two runs' metric, paired by
seed, or one run's metric against a number) stands in a relation to its reference value
(0 for a difference, 1 for a ratio) beyond a margin:

* ``lower``: estimate < reference − margin;
* ``higher``: estimate > reference + margin;
* ``equal``: reference − margin ≤ estimate ≤ reference + margin.

The estimate is the mean of the per-seed values with its 95 % Student-t interval over the
seeds. The verdict is ``supported`` when every value of the interval satisfies the
relation, ``contradicted`` when every value violates it, and ``inconclusive`` when the
interval holds both (or is undefined: fewer than two seeds, or a non-finite value).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
RELATIONS = ("lower", "higher", "equal")
REFERENCE = {"difference": 0.0, "ratio": 1.0}


def per_seed(a: list[float], b: list[float] | float, estimate: str) -> list[float]:
    """The estimate at each seed: ``a - b`` or ``a / b``, ``b`` paired by seed or a number."""
    bs = [b] * len(a) if isinstance(b, int | float) else b
    if len(bs) != len(a):
        raise ValueError(f"{len(a)} values against {len(bs)}: pair them by seed")
    if estimate == "difference":
        return [x - y for x, y in zip(a, bs, strict=True)]
    if estimate == "ratio":
        return [x / y if y != 0 else math.nan for x, y in zip(a, bs, strict=True)]
    raise ValueError(f"estimate must be difference or ratio, got {estimate!r}")


def interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over the seeds; the bounds
    are NaN below two values or when a value is not finite."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2 or not np.all(np.isfinite(x)):
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def verdict(low: float, high: float, relation: str, margin: float, reference: float) -> str:
    """Whether the interval [low, high] satisfies ``relation`` with ``margin`` everywhere
    (supported), nowhere (contradicted), or partly (inconclusive)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {', '.join(RELATIONS)}, got {relation!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if relation == "lower":
        line = reference - margin
        return SUPPORTED if high < line else CONTRADICTED if low >= line else INCONCLUSIVE
    if relation == "higher":
        line = reference + margin
        return SUPPORTED if low > line else CONTRADICTED if high <= line else INCONCLUSIVE
    if margin < 0:
        raise ValueError(f"an equal claim needs a margin ≥ 0, got {margin}")
    band_low, band_high = reference - margin, reference + margin
    if band_low <= low and high <= band_high:
        return SUPPORTED
    if high < band_low or low > band_high:
        return CONTRADICTED
    return INCONCLUSIVE
