"""Read the DAG's artifacts into tables: one row per run, per autoencoder, per stage.

Generic on purpose: a stage that starts writing a new number (``fid``, ``kid_mean``,
``lpips``...) shows up in the report without a code change here, because every
top-level numeric key of a metrics file becomes a column. Optional artifacts
(files some stages only write in some configurations) are read when present.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from twostage import paths
from twostage.artifacts import read_json
from twostage.config import Params
from twostage.kinds import CONTINUOUS_AUTOENCODERS, JOINT_PRIORS
from twostage.report import convergence

# Calibration rows of every autoencoder: key in calibration/metrics.json → row label.
CALIBRATION_ROWS = {
    "real_val_vs_train": "calibration: real validation images (floor)",
    "random_tokens": "calibration: decoded random tokens (bad model)",
}
# A continuous autoencoder has no tokens: its calibrate stage decodes N(0, I) latents
# under the same key (for a VAE that is the VAE with its own prior).
CONTINUOUS_CALIBRATION_ROWS = {
    **CALIBRATION_ROWS,
    "random_tokens": "calibration: decoded N(0, I) latents (bad model)",
}


# The stage-1 ceiling: the autoencoder's reconstructions of the validation images, scored
# like the calibration rows (key in eval/autoencoders/<ae>/metrics.json → row label).
CEILING_KEY = "decoded_val_vs_train"
CEILING_ROW = "calibration: decoded validation encodings (stage-1 ceiling)"
# Best to worst: the floor, what stage 1 alone gives, what a prior that learned nothing gives.
REFERENCE_ORDER = ("real_val_vs_train", CEILING_KEY, "random_tokens")


def calibration_rows(p: Params, ae: str) -> dict[str, str]:
    """Key in ``ae``'s calibration/metrics.json → row label, by what its calibration decoded."""
    if p.autoencoder(ae)["kind"] in CONTINUOUS_AUTOENCODERS:
        return CONTINUOUS_CALIBRATION_ROWS
    return CALIBRATION_ROWS


def fd_vs_calibration(fd: float, floor: float, bad: float, bad_model: str) -> str:
    """Where a run's Fréchet distance sits on its autoencoder's calibration scale.

    A run worse than the bad model is said so in words: its number alone reads like
    any other FD in the table. Equal to the bad model's FD happens by construction (a
    VAE sampled with its own N(0, I) prior decodes the calibration's images).
    """
    if not math.isfinite(fd):
        return "not finite"
    if math.isclose(fd, bad, rel_tol=1e-9):
        return f"equal to {bad_model} (bad model)"
    if fd > bad:
        return f"worse than {bad_model} (bad model)"
    if fd < floor:
        return "below the floor (real images)"
    return "between floor and bad model"


def bad_model_name(p: Params, ae: str) -> str:
    """What the bad-model calibration row of ``ae`` decoded, in a few words."""
    if p.autoencoder(ae)["kind"] in CONTINUOUS_AUTOENCODERS:
        return "N(0, I) latents"
    return "random tokens"


def bad_model_caption(p: Params, ae: str) -> str:
    """What the calibration grid of ``ae`` shows."""
    if p.autoencoder(ae)["kind"] in CONTINUOUS_AUTOENCODERS:
        return f"Autoencoder {ae}: decoded N(0, I) latents"
    return f"Autoencoder {ae}: decoded uniformly random tokens"


def optional(path: str | Path) -> Path | None:
    """``path`` if it exists: some stages write some files only in some configurations."""
    return Path(path) if Path(path).is_file() else None


def numeric(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every top-level number of a metrics dict (bools and nested dicts are not metrics)."""
    return {
        f"{prefix}{k}": v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _read_optional(path: str | Path) -> dict[str, Any]:
    return read_json(path) if optional(path) else {}


def autoencoder_metrics(ae: str) -> dict[str, float]:
    """Training metrics of an autoencoder plus its reconstruction evaluation when present."""
    out = numeric(read_json(paths.autoencoder(ae)["metrics"]))
    out.update(numeric(_read_optional(paths.reconstruction(ae)["metrics"]), prefix="recon_"))
    return out


def convergence_table(p: Params) -> pd.DataFrame:
    """One row per validation curve of every trained model: was it still improving?"""
    models = [("autoencoder", ae, p.autoencoder(ae)) for ae in p.target_autoencoders()]
    models += [("prior", pr, p.prior(pr)) for pr in p.target_priors()]
    rows = []
    for role, name, spec in models:
        curve = paths.autoencoder(name) if role == "autoencoder" else paths.prior(name)
        select_by = spec.get("select_by")  # a token prior's; the others keep their lowest bound
        for status in convergence.model_curves(curve["curve"], spec["kind"], select_by):
            rows.append({"role": role, "model": name, "kind": spec["kind"], **status})
    table = pd.DataFrame(rows)
    if "last_step" in table:  # a curve without evaluations has none: keep the rest integers
        table["last_step"] = table["last_step"].astype("Int64")
    return table


def improving_curves(conv: pd.DataFrame, role: str, model: str) -> list[str]:
    """Validation columns of ``model`` that were still improving at its last evaluation."""
    if conv.empty:
        return []
    hit = conv[
        (conv["role"] == role)
        & (conv["model"] == model)
        & conv["still_improving"]
        & conv["decides_checkpoint"]
    ]
    return list(hit["column"])


def improving_note(conv: pd.DataFrame, models: list[tuple[str, str]]) -> str:
    """The marker naming which of ``models`` ((role, name) pairs) still improved, or ""."""
    parts = [
        f"{role} {name} ({', '.join(cols)})"
        for role, name in models
        if (cols := improving_curves(conv, role, name))
    ]
    return f"{convergence.MARKER}: {'; '.join(parts)}" if parts else ""


def runs_table(p: Params, conv: pd.DataFrame, fd_col: str) -> pd.DataFrame:
    """One row per sampling run, then the calibration rows of each autoencoder.

    Evaluation metrics keep their names (``fd_classifier``, ``precision``...);
    prior and autoencoder numbers are prefixed ``prior.`` and ``ae.`` so a
    column always says which stage measured it. ``convergence`` carries the
    still-improving marker of the run's prior and autoencoder (``conv`` is
    :func:`convergence_table`); ``fd_vs_calibration`` places each run's ``fd_col`` on
    its autoencoder's calibration scale.
    """
    rows = []
    for run in p["targets"]:
        prior = p.prior_of_run(run)
        ae = p.autoencoder_of_prior(prior)
        stats = read_json(paths.samples(run)["stats"])
        # A GLF or VAE+flow run decodes with the prior's own, jointly trained autoencoder,
        # whose curves are the prior's: the separately trained one does not affect it.
        trained = [("prior", prior)]
        if p.prior(prior)["kind"] not in JOINT_PRIORS:
            trained.append(("autoencoder", ae))
        evaluation = numeric(read_json(paths.evaluation(run)["metrics"]))
        cal = read_json(paths.calibration(ae)["metrics"])
        row: dict[str, Any] = {
            "run": run,
            "prior": prior,
            "prior_kind": p.prior(prior)["kind"],
            "autoencoder": ae,
            "sampler": stats.get("sampler", p.run(run)["sampler"]),
        }
        # The scores first, then the notes on them (long texts that would push the
        # scores out of a narrow window), then everything else.
        row.update(evaluation)
        if fd_col in evaluation:
            floor, bad = (cal[key][fd_col] for key in ("real_val_vs_train", "random_tokens"))
            row["fd_vs_calibration"] = fd_vs_calibration(
                evaluation[fd_col], floor, bad, bad_model_name(p, ae)
            )
        row["convergence"] = improving_note(conv, trained)
        row["prior.still_improving"] = bool(improving_curves(conv, "prior", prior))
        row["ae.still_improving"] = bool(improving_curves(conv, "autoencoder", ae))
        row.update(numeric(stats))
        row.update(numeric(read_json(paths.prior(prior)["metrics"]), prefix="prior."))
        row.update({f"ae.{k}": v for k, v in autoencoder_metrics(ae).items()})
        rows.append(row)
    for ae in p.target_autoencoders():
        rows += reference_rows(p, ae, conv)
    return pd.DataFrame(rows)


def reference_rows(p: Params, ae: str, conv: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows that give ``ae``'s table its scale: floor, stage-1 ceiling, bad model.

    The ceiling comes from the reconstruction evaluation (absent until it has run); it
    carries the autoencoder's still-improving marker, since a longer training moves it.
    """
    blocks = read_json(paths.calibration(ae)["metrics"])
    recon = _read_optional(paths.reconstruction(ae)["metrics"])
    if CEILING_KEY in recon:
        blocks[CEILING_KEY] = recon[CEILING_KEY]
    labels = {**calibration_rows(p, ae), CEILING_KEY: CEILING_ROW}
    ae_note = improving_note(conv, [("autoencoder", ae)])
    return [
        {
            "run": labels[key],
            "autoencoder": ae,
            "convergence": ae_note if key == CEILING_KEY else "",
            **numeric(blocks[key]),
        }
        for key in REFERENCE_ORDER
        if key in blocks
    ]


def autoencoders_table(p: Params, conv: pd.DataFrame) -> pd.DataFrame:
    """One row per autoencoder: every number its training and reconstruction evaluation
    wrote, and whether its validation curve was still improving at its last evaluation."""
    return pd.DataFrame(
        [
            {
                "autoencoder": ae,
                "dataset": p.dataset_of_autoencoder(ae),
                "still_improving": bool(improving_curves(conv, "autoencoder", ae)),
                **autoencoder_metrics(ae),
            }
            for ae in p.target_autoencoders()
        ]
    )


def _benchmark_seconds(tsv: Path) -> dict[str, float]:
    """Wall time, CPU time and peak memory of one Snakemake benchmark file."""
    bench = pd.read_csv(tsv, sep="\t")
    row = bench.iloc[-1]
    out = {"seconds": float(row["s"])}
    for col, name in (("cpu_time", "cpu_seconds"), ("max_rss", "max_rss_mb")):
        if col in bench and not (isinstance(row[col], float) and math.isnan(row[col])):
            out[name] = pd.to_numeric(row[col], errors="coerce")
    return out


def wall_times(p: Params) -> pd.DataFrame:
    """Wall time of every stage: Snakemake's benchmark files, else the stages' own timers.

    ``dvc repro`` writes no benchmark files, so after a DVC run the training and
    sampling stages still report the time they measured themselves. The report's
    own file (``benchmarks/report.tsv``) is skipped: it would be the previous report's.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for tsv in sorted(Path(paths.BENCHMARKS).glob("*/*.tsv")):  # <stage>/<name>.tsv
        stage, name = tsv.parent.name, tsv.stem
        rows[(stage, name)] = {"stage": stage, "name": name, "source": "benchmark"}
        rows[(stage, name)].update(_benchmark_seconds(tsv))

    def own_timer(stage: str, name: str, metrics_file: str, seconds_of) -> None:
        m = read_json(metrics_file)
        row = rows.setdefault(
            (stage, name),
            {"stage": stage, "name": name, "seconds": seconds_of(m), "source": "stage timer"},
        )
        row["device"] = m.get("device", "")

    for ae in p.target_autoencoders():
        own_timer(
            "train_autoencoder", ae, paths.autoencoder(ae)["metrics"], lambda m: m["train_time_s"]
        )
    for prior in p.target_priors():
        own_timer("train_prior", prior, paths.prior(prior)["metrics"], lambda m: m["train_time_s"])
    for run in p["targets"]:
        own_timer(
            "sample",
            run,
            paths.samples(run)["stats"],
            lambda m: m["n_samples"] * m["seconds_per_image"],
        )
    return pd.DataFrame(list(rows.values()))
