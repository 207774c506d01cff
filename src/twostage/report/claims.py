"""The claims table: each declared claim (claims.py) judged on its held-out seeds.

Per claim, the metric of each run at each held-out seed is read from that seed's replicate
(its evaluation, its samples' stats, and its prior's metrics prefixed ``prior.``, the
names of the runs table). The per-seed estimate is the difference or ratio of the two
runs at the same seed (paired by seed), or of the run and the claim's number; its mean,
95 % Student-t interval over the seeds and verdict come from report/verdict.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twostage import claims, paths
from twostage.artifacts import read_json
from twostage.config import ConfigError, Params
from twostage.report import verdict
from twostage.report.collect import numeric
from twostage.report.page import CompactTable, Section, Table, Text

OPERATOR = {"difference": "−", "ratio": "/"}


def replicate_metrics(p: Params, replicate: str) -> dict[str, float]:
    """Every number measured on one replicate run, under the runs table's column names."""
    out = numeric(read_json(paths.evaluation(replicate)["metrics"]))
    out.update(numeric(read_json(paths.samples(replicate)["stats"])))
    prior = paths.prior(p.prior_of_run(replicate))["metrics"]
    out.update(numeric(read_json(prior), prefix="prior."))
    return out


def _values(p: Params, name: str, claim: dict, replicas: list[tuple[str, int]]) -> list[float]:
    metric, values = claim["metric"], []
    for replicate, seed in replicas:
        measured = replicate_metrics(p, replicate)
        if metric not in measured:
            known = ", ".join(sorted(measured))
            where = p.file_of("claims", name, "metric")
            raise ConfigError(
                f"{where}: claims.{name}.metric: {metric!r} is not measured on run "
                f"{replicate!r} (seed {seed}); measured: {known}"
            )
        values.append(measured[metric])
    return values


def statement(claim: dict) -> str:
    """The claim as an inequality: ``fd_classifier: a − b < 0``."""
    estimate = claim["estimate"]
    ref, margin = verdict.REFERENCE[estimate], claim["margin"]
    expr = f"{claim['run']} {OPERATOR[estimate]} {claim['versus']}"
    if claim["relation"] == "lower":
        bound = f"< {ref - margin:g}"
    elif claim["relation"] == "higher":
        bound = f"> {ref + margin:g}"
    else:
        bound = f"in [{ref - margin:g}, {ref + margin:g}]"
    return f"{claim['metric']}: {expr} {bound}"


def chosen_on(p: Params, claim: dict) -> str:
    """The seeds each involved prior's settings were chosen on, as the prior entries say."""
    parts = []
    for prior in dict.fromkeys(p.prior_of_run(r) for r in claims.runs_of(claim)):
        seeds = p.prior(prior)["chosen_on_seeds"]
        parts.append(f"{prior}: {' '.join(map(str, seeds)) if seeds else 'not recorded'}")
    return "; ".join(parts)


def claims_table(p: Params) -> pd.DataFrame:
    """One row per claim: estimate, interval, verdict, the seeds used and those chosen on."""
    rows = []
    for name, claim in p.data["claims"].items():
        replicas = claims.replicates_at_seeds(p, claim)
        a = _values(p, name, claim, replicas[claim["run"]])
        versus = claim["versus"]
        b = _values(p, name, claim, replicas[versus]) if isinstance(versus, str) else versus
        estimate = claim["estimate"]
        values = verdict.per_seed(a, b, estimate)
        mean, low, high = verdict.interval(values)
        ref, margin = verdict.REFERENCE[estimate], claim["margin"]
        pairs = zip(claim["seeds"], values, strict=True)
        rows.append(
            {
                "claim": name,
                "statement": statement(claim),
                "estimate": estimate + (" paired by seed" if isinstance(versus, str) else ""),
                "mean": mean,
                "ci95_low": low,
                "ci95_high": high,
                "verdict": verdict.verdict(low, high, claim["relation"], margin, ref),
                "held_out_seeds": " ".join(map(str, claim["seeds"])),
                "chosen_on_seeds": chosen_on(p, claim),
                "per_seed": "; ".join(f"{s}: {v:.6g}" for s, v in pairs),
            }
        )
    return pd.DataFrame(rows)


def significant(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits, positional (130, not 1.3e+02) from 1e-4 to 1e6."""
    if x == 0 or not 1e-4 <= abs(x) < 1e6:
        return f"{x:.{digits}g}"
    return np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")


def _compact(table: pd.DataFrame) -> pd.DataFrame:
    """Short display strings: the estimate as mean ± half-width, 3 significant digits."""

    def estimate(row) -> str:
        if pd.isna(row["ci95_low"]):
            return f"{significant(row['mean'], 3)} (no interval)"
        half = (row["ci95_high"] - row["ci95_low"]) / 2
        return f"{significant(row['mean'], 3)} ± {significant(half, 2)}"

    return pd.DataFrame(
        {
            "claim": table["claim"],
            "tests": table["statement"],
            "estimate ± 95 %": table.apply(estimate, axis=1),
            "held-out seeds": table["held_out_seeds"],
            "verdict": table["verdict"],
            "chosen on seeds": table["chosen_on_seeds"],
        }
    )


def legend() -> str:
    return (
        "Each claim is tested on its held-out seeds: at each seed its runs are trained and "
        "sampled afresh (replicates), and the estimate is the run's metric minus (or divided "
        "by) the other run's at the same seed, paired by seed, or the claim's number. "
        "estimate ± 95 % is the mean over the seeds ± the half-width of the Student-t "
        "interval (n − 1 degrees of freedom). supported: the whole interval satisfies the "
        "inequality in tests; contradicted: the whole interval violates it; inconclusive: "
        "the interval holds both. chosen on seeds: the seeds each prior's settings were "
        "chosen on (chosen_on_seeds), none of which a claim may be tested on."
    )


def section(p: Params, tab_dir: Path, write_csv) -> Section | None:
    """The claims section with its CSV written; None when the params make no claim."""
    table = claims_table(p)
    if table.empty:
        return None
    write_csv(table, tab_dir / "claims.csv")
    return Section(
        "Claims",
        [
            CompactTable(
                _compact(table),
                caption="Claims tested on held-out seeds",
                text_columns=("claim", "tests", "held-out seeds", "verdict", "chosen on seeds"),
            ),
            Text(legend()),
            Table(table, csv="tables/claims.csv", collapsed="Claims: every number"),
        ],
    )
