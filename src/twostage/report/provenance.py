"""Where the numbers come from: code version, params of each stage, data hashes, software,
and whether each result was made by the current code and software."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from twostage import paths
from twostage.artifacts import read_json
from twostage.config import Params
from twostage.plan import jobs, param_values
from twostage.provenance import software, versions

PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "scikit-learn",
    "torch-fidelity",
    "lpips",
    "prdc",
    "snakemake",
    "dvc",
)


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (e.g. an unpacked archive), or no git


def git_state() -> dict[str, Any]:
    """HEAD commit and whether tracked files differ from it (results/ is not tracked)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit or "unknown (not a git checkout)",
        "git_dirty": None if status is None else status != "",
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def devices(p: Params) -> dict[str, str]:
    """The device each training/sampling stage actually ran on (recorded in its metrics)."""
    found = {}
    for ae in p.target_autoencoders():
        found[f"train_autoencoder {ae}"] = read_json(paths.autoencoder(ae)["metrics"]).get("device")
    for prior in p.target_priors():
        found[f"train_prior {prior}"] = read_json(paths.prior(prior)["metrics"]).get("device")
    for run in p["targets"]:
        found[f"sample {run}"] = read_json(paths.samples(run)["stats"]).get("device")
    return {k: v for k, v in found.items() if v is not None}


def _trainings(p: Params) -> dict[str, str]:
    """Each training job of the targets → its metrics file."""
    found = {
        f"train_autoencoder {ae}": paths.autoencoder(ae)["metrics"]
        for ae in p.target_autoencoders()
    }
    found.update({f"train_prior {pr}": paths.prior(pr)["metrics"] for pr in p.target_priors()})
    return found


def machines(p: Params) -> str:
    """One sentence: the CPUs the trainings ran on, and which of them trained in bf16.

    The same params give other numbers on a CPU without native bf16 (float32 training),
    so a reader comparing with another build needs this next to the numbers.
    """
    cpus: dict[str, list[str]] = {}
    bf16 = []
    for job, metrics in _trainings(p).items():
        m = read_json(metrics)
        machine = (m.get("versions") or {}).get("machine")
        if machine:
            isa = machine.get("onednn_max_cpu_isa")
            label = (
                f"{machine['cpu']} ({'with' if machine['native_bf16'] else 'without'} native bf16"
                + (f", oneDNN capped at {isa}" if isa else "")
                + ")"
            )
            cpus.setdefault(label, []).append(job.split()[1])
        if m.get("cpu_bf16_used"):
            bf16.append(job.split()[1])
    if not cpus:
        return "Trained on: not recorded."
    where = "; ".join(f"{cpu}: {', '.join(names)}" for cpu, names in cpus.items())
    if len(cpus) == 1:
        where = next(iter(cpus))
    trained = f"bf16 autocast in {', '.join(bf16)}" if bf16 else "every training in float32"
    return f"Trained on {where}; {trained}."


def dataset_manifests(p: Params) -> dict[str, Any]:
    """Source, counts and content hashes of every dataset: the data a number was measured on."""
    out = {}
    for ds in p.target_datasets():
        m = read_json(paths.data(ds)["manifest"])
        out[ds] = {k: m[k] for k in ("source", "path", "counts", "sha256") if k in m}
    return out


def stage_params(p: Params) -> dict[str, dict[str, Any]]:
    """The params values each stage reads (exactly what reruns it), keyed by stage name."""
    return {j.dvc_name: param_values(p, j) for j in jobs(p) if j.params}


def result_versions(p: Params) -> dict[str, str]:
    """Each result (a stage's metrics file): made by the current code and software, or not.

    A stage records the code hash (its code and its upstream jobs') and the software hash
    it ran with (versions.py). A result made before a code or package change that was
    declared not to alter results (`snakemake --touch`, `dvc commit`) keeps its old hashes.
    """
    code, now = versions.code_hashes(p), software.software_hash()
    status = {}
    for job in jobs(p):
        for metrics in job.metrics:
            made = versions.recorded(metrics)
            if made is None:
                status[metrics] = "NOT RECORDED (made before stages recorded their versions)"
                continue
            other = [
                what
                for what, then, current in (
                    ("code", made.get("code"), code[job.dvc_name]),
                    ("software", made.get("software"), now),
                )
                if then != current
            ]
            status[metrics] = f"NOT CURRENT (other {' and '.join(other)})" if other else "current"
    return status


def code_and_software(p: Params) -> dict[str, Any]:
    """The provenance entry on code and software: results not made by the current ones first."""
    status = result_versions(p)
    marked = [f"{m}: {s}" for m, s in status.items() if s != "current"]
    return {
        "results_not_made_by_the_current_code_and_software": marked or "none",
        "software_hash": software.software_hash(),
        "results": status,
    }


def provenance(p: Params) -> dict[str, Any]:
    return {
        "code_and_software": code_and_software(p),
        **git_state(),
        "params_files": list(p.files),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "devices": devices(p),
        "machines": machines(p),
        "datasets": dataset_manifests(p),
    }
