"""Where every artifact lives, addressed by name (docs/architecture.md, "Stages and artifacts").

The Snakefile rules (called with wildcard patterns such as ``"{name}"``), the DVC
pipeline generator, the stages and the report all take their paths from here, so they
never disagree about a file name.
"""

from __future__ import annotations

RESULTS = "results"
# The pinned packages every job runs with (the venv is built from them).
REQUIREMENTS = "requirements.txt"


def data(dataset: str) -> dict[str, str]:
    d = f"{RESULTS}/data/{dataset}"
    return {"train": f"{d}/train.npz", "val": f"{d}/val.npz", "manifest": f"{d}/manifest.json"}


def classifier(dataset: str) -> dict[str, str]:
    d = f"{RESULTS}/extractors/classifier-{dataset}"
    return {"model": f"{d}/model.pt", "metrics": f"{d}/metrics.json"}


def features(dataset: str, extractor: str) -> dict[str, str]:
    d = f"{RESULTS}/features/{dataset}-{extractor}"
    return {"train": f"{d}/train.npy", "val": f"{d}/val.npy", "key": f"{d}/key.json"}


def autoencoder(ae: str) -> dict[str, str]:
    d = f"{RESULTS}/autoencoders/{ae}"
    return {
        "model": f"{d}/model.pt",
        "metrics": f"{d}/metrics.json",
        "recon": f"{d}/recon.png",
        "curve": f"{d}/train_log.csv",
    }


def latents(ae: str) -> dict[str, str]:
    d = f"{RESULTS}/latents/{ae}"
    return {"train": f"{d}/train.npy", "val": f"{d}/val.npy"}


def prior(name: str) -> dict[str, str]:
    d = f"{RESULTS}/priors/{name}"
    return {"model": f"{d}/model.pt", "metrics": f"{d}/metrics.json", "curve": f"{d}/train_log.csv"}


def samples(run: str) -> dict[str, str]:
    d = f"{RESULTS}/samples/{run}"
    return {
        "images": f"{d}/images.npy",
        "grid": f"{d}/grid.png",
        "stats": f"{d}/stats.json",
        "classes": f"{d}/classes.npy",  # the class asked for per image (conditional priors)
    }


def inpainting(prior: str) -> dict[str, str]:
    d = f"{RESULTS}/inpainting/{prior}"
    return {"grid": f"{d}/grid.png", "stats": f"{d}/stats.json"}


def large_samples(prior: str) -> dict[str, str]:
    d = f"{RESULTS}/large_samples/{prior}"
    return {"grid": f"{d}/grid.png", "stats": f"{d}/stats.json"}


def evaluation(run: str) -> dict[str, str]:
    return {"metrics": f"{RESULTS}/eval/{run}/metrics.json"}


def neighbours(run: str) -> dict[str, str]:
    """Nearest training images of a run's samples, and the memorization check."""
    d = f"{RESULTS}/eval/{run}"
    return {
        "grid": f"{d}/neighbours.png",
        "metrics": f"{d}/memorization.json",
        "histogram": f"{d}/memorization.png",
        "flagged": f"{d}/flagged.png",
    }


def calibration(ae: str) -> dict[str, str]:
    d = f"{RESULTS}/calibration/{ae}"
    return {"metrics": f"{d}/metrics.json", "grid": f"{d}/random_tokens.png"}


def report() -> dict[str, str]:
    d = f"{RESULTS}/report"
    return {
        "html": f"{d}/index.html",
        "markdown": f"{d}/report.md",
        "table": f"{d}/tables/runs.csv",
        # FD of every steps sweep, a CSV that `dvc plots show` draws (committed to git)
        "fd_vs_steps": f"{d}/plots/fd_vs_steps.csv",
    }


def reconstruction(ae: str) -> dict[str, str]:
    d = f"{RESULTS}/eval/autoencoders/{ae}"
    return {
        "metrics": f"{d}/metrics.json",
        "usage": f"{d}/usage.png",
        "grid": f"{d}/recon_grid.png",
    }


LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"


def log(stage: str, name: str | None = None) -> str:
    """A job's log (Snakemake's ``log:``): one per stage and name, one for the report."""
    return f"{LOGS}/{stage}/{name}.log" if name is not None else f"{LOGS}/{stage}.log"


def benchmark(stage: str, name: str | None = None) -> str:
    """A job's Snakemake benchmark file (wall time, CPU time, memory), read by the report."""
    return f"{BENCHMARKS}/{stage}/{name}.tsv" if name is not None else f"{BENCHMARKS}/{stage}.tsv"


# The code and software hash of every job (src/twostage/provenance/versions.py): a params file of
# every DVC stage, rewritten whenever Snakemake parses the Snakefile or twostage runs.
VERSIONS = f"{RESULTS}/versions.yaml"

# Resumable training state: outside results/, so neither Snakemake (which deletes a
# rerun job's outputs) nor DVC (which tracks only declared outputs) touches it.
STATE_DIR = ".twostage-state"


def training_state(stage: str, name: str) -> str:
    return f"{STATE_DIR}/{stage}/{name}.pt"
