"""Replicates: the ``replicates`` setting expanded into seeded copies of runs, priors and
autoencoders, so that every replicate is an ordinary entry, job and DVC stage.

``replicates.<run or sweep>: {seeds: N or [s, ...], level: sampling | prior | chain}``
redoes, once per seed, what the level names and shares everything upstream of it:

* ``sampling``: the run's sampling and evaluation (one trained prior, several streams);
* ``prior``: the prior's training too (one autoencoder, several priors);
* ``chain``: stage 1 as well (one dataset, one classifier, one real-feature cache).

``seeds: N`` means the global ``seed`` and the N - 1 seeds after it. The replicate with
the global seed *is* the plain entry (``glf``, ``glf_mnist``, ``ae_mnist``); any other
seed ``k`` is a copy named ``<name>-seed<k>`` (DVC stage names and the Snakefile's
wildcards allow no other punctuation than ``-`` and ``_``), so adding seeds adds jobs
and changes none that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Which tables a level copies, upstream last.
COPIED_TABLES = {
    "sampling": ("runs",),
    "prior": ("runs", "priors"),
    "chain": ("runs", "priors", "autoencoders"),
}


def replica_name(name: str, seed: int, global_seed: int) -> str:
    """The entry of ``name`` trained or sampled with ``seed``: itself for the global seed."""
    return name if seed == global_seed else f"{name}-seed{seed}"


def seed_list(spec: dict[str, Any], global_seed: int) -> list[int]:
    seeds = spec["seeds"]
    return list(range(global_seed, global_seed + seeds)) if isinstance(seeds, int) else seeds


@dataclass
class Replicates:
    """What the expansion made: each copy's original and seed, each run's replicates."""

    # table → copy name → (the entry it copies, its seed)
    copies: dict[str, dict[str, tuple[str, int]]] = field(
        default_factory=lambda: {t: {} for t in COPIED_TABLES["chain"]}
    )
    # replicated run → [(replicate run, seed)] in the order of its seeds
    of_run: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def expand(
    data: dict[str, Any], origin: dict, sweep_of: dict[str, str], fail, settings=None
) -> Replicates:
    """Add the seeded copies to ``data`` (runs, priors, autoencoders) and return what it made.

    ``settings`` are the replicates to make (default: ``data["replicates"]``; the claims add
    their seeds to them, claims.py). ``fail(path, message)`` raises the one-line config error.
    """
    out = Replicates()
    settings = data["replicates"] if settings is None else settings
    for key in settings:
        if key not in data["runs"] and key not in data["sweeps"]:
            fail(("replicates", key), f"undefined run or sweep {key!r}")
    made_by: dict[tuple[str, str], tuple[str, str]] = {}  # copy → (run that made it, level)
    for run in list(data["runs"]):
        key = run if run in settings else sweep_of.get(run)
        if key not in settings:
            continue
        spec = settings[key]
        level = spec["level"]
        replicas = [
            (_copy_chain(data, run, seed, level, made_by, out, fail), seed)
            for seed in seed_list(spec, data["seed"])
        ]
        out.of_run[run] = replicas
        for name, _ in replicas:
            origin.setdefault(("runs", name), origin.get(("replicates", key), "params"))
    return out


def _copy_chain(data, run, seed, level, made_by, out, fail) -> str:
    """The replicate of ``run`` with ``seed`` (and its prior and autoencoder per ``level``)."""
    global_seed = data["seed"]
    prior = data["runs"][run]["prior"]
    ae = data["priors"][prior]["autoencoder"]
    names = {
        "runs": replica_name(run, seed, global_seed),
        "priors": replica_name(prior, seed, global_seed) if level != "sampling" else prior,
        "autoencoders": replica_name(ae, seed, global_seed) if level == "chain" else ae,
    }
    if seed == global_seed:
        return run
    entries = {
        "runs": {**data["runs"][run], "prior": names["priors"]},
        "priors": {**data["priors"][prior], "autoencoder": names["autoencoders"]},
        "autoencoders": dict(data["autoencoders"][ae]),
    }
    base = {"runs": run, "priors": prior, "autoencoders": ae}
    for table in COPIED_TABLES[level]:
        name = names[table]
        if name in data[table] and name not in out.copies[table]:
            fail(("replicates",), f"replicate {name!r} would replace the {table[:-1]} of that name")
        earlier = made_by.get((table, name))
        if earlier and data[table][name] != entries[table]:
            other_run, other_level = earlier
            fail(
                ("replicates",),
                f"{table[:-1]} {name!r} is replicated at level {other_level} for run "
                f"{other_run!r} and at level {level} for run {run!r}: give runs that share "
                "a prior the same level",
            )
        data[table][name] = entries[table]
        out.copies[table][name] = (base[table], seed)
        made_by[(table, name)] = (run, level)
    return names["runs"]
