"""Claims: declared comparisons tested on seeds that no choice of settings saw.

``claims.<name>: {run, versus, metric, estimate, relation, margin, seeds}`` says that
``metric`` of ``run`` is lower than, higher than or equal to (within ``margin``) that of
the run ``versus`` (or the number ``versus``), tested at each of ``seeds``. A prior entry
records the seeds its settings were chosen on (``chosen_on_seeds``); a claim whose seeds
overlap those of a prior it involves is refused here, at config load.

The claim's runs are trained and sampled at each of its seeds through the replicates
(seeds.py): its seeds are added to the run's ``replicates`` entry (or to a new one at level
``prior``, so each held-out seed trains the prior afresh). The report judges the claim
(report/claims.py, report/verdict.py).
"""

from __future__ import annotations

from typing import Any

from twostage import seeds

# The level a claim's run is replicated at when no replicates entry names it: a held-out
# seed must train the prior, not just resample a prior trained on another seed.
DEFAULT_LEVEL = "prior"


def runs_of(claim: dict[str, Any]) -> list[str]:
    """The runs a claim compares: its run, and ``versus`` when that names a run."""
    versus = claim["versus"]
    return [claim["run"], *([versus] if isinstance(versus, str) else [])]


def check(data: dict[str, Any], fail) -> None:
    """Each claim names target runs, a sensible estimate, and seeds no choice saw.

    ``fail(path, message)`` raises the one-line config error.
    """
    for name, claim in data["claims"].items():
        for key, run in (("run", claim["run"]), ("versus", claim["versus"])):
            if isinstance(run, str) and run not in data["targets"]:
                fail(("claims", name, key), f"run {run!r} is not among the targets")
        if claim["versus"] == claim["run"]:
            fail(("claims", name, "versus"), "a run compared with itself")
        if claim["estimate"] == "ratio" and claim["versus"] == 0:
            fail(("claims", name, "versus"), "a ratio against 0 is undefined")
        if claim["relation"] == "equal" and claim["margin"] < 0:
            fail(("claims", name, "margin"), "an equal claim needs a margin ≥ 0")
        held_out = set(claim["seeds"])
        for run in runs_of(claim):
            prior = data["runs"][run]["prior"]
            chosen = data["priors"][prior]["chosen_on_seeds"]
            overlap = sorted(held_out & set(chosen))
            if overlap:
                fail(
                    ("claims", name, "seeds"),
                    f"held-out seeds {overlap} overlap the seeds prior {prior!r} was chosen "
                    f"on (chosen_on_seeds {chosen}): test the claim on seeds no choice saw",
                )


def replicate_settings(
    data: dict[str, Any], sweep_of: dict[str, str], fail
) -> dict[str, dict[str, Any]]:
    """The ``replicates`` settings with every claim's seeds added to its runs' seeds.

    A run keeps the level of the replicates entry that names it (or its sweep); a level
    of ``sampling`` is refused, since its seeds would not train the prior.
    """
    settings = {k: dict(v) for k, v in data["replicates"].items()}
    global_seed = data["seed"]
    for name, claim in data["claims"].items():
        for run in runs_of(claim):
            key = run if run in settings else sweep_of.get(run)
            spec = settings.get(key, {"seeds": [global_seed], "level": DEFAULT_LEVEL})
            level = spec["level"]
            if level == "sampling":
                fail(
                    ("claims", name, "seeds"),
                    f"run {run!r} is replicated at level sampling (replicates.{key}): a "
                    "held-out seed must train the prior, give it level prior or chain",
                )
            wanted = set(seeds.seed_list(spec, global_seed)) | set(claim["seeds"])
            settings[run] = {"seeds": sorted(wanted), "level": level}
    return settings


def replicates_at_seeds(p, claim: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """Run → (replicate, seed) at each of the claim's seeds, in the claim's seed order.

    ``p`` is the loaded :class:`twostage.config.Params`.
    """
    out = {}
    for run in runs_of(claim):
        by_seed = {seed: name for name, seed in p.replicates_of(run)}
        out[run] = [(by_seed[seed], seed) for seed in claim["seeds"]]
    return out
