"""Snakemake takes over outputs that DVC restored, once DVC confirms they are current.

Snakemake judges a job by the record it keeps of each output (``.snakemake/metadata``:
the params, code and software hashes and input checksums it was made with). Outputs
that DVC put in place have no record (``dvc pull`` into a fresh clone, a pipeline run by
``dvc repro``) or the record of other files (``git checkout`` + ``dvc checkout`` of
another commit, ``dvc exp apply``: the records describe the build made last, with its
params). Snakemake would then rebuild what DVC restored.

When the Snakefile finds an output without a record, with a record of other params,
code or software, or with a record of another file (its modification time is not the
one recorded), and ``dvc status`` confirms that the workspace is exactly what dvc.lock
says the current params, code and software make, those outputs are what Snakemake
itself would have made: ``snakemake --touch --forceall`` then records every job once
(and orders the modification times). If anything differs, nothing is recorded and both
tools report the difference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from base64 import urlsafe_b64encode
from pathlib import Path

from twostage import yamlio
from twostage.config import Params
from twostage.plan import dvc_pipeline, jobs
from twostage.provenance.versions import rule_params

NESTED = "TWOSTAGE_ADOPTING"  # set in the `snakemake --touch` this starts


def record_path(output: str, metadata: Path = Path(".snakemake/metadata")) -> Path:
    """Where Snakemake's file persistence keeps the record of ``output``.

    The base64 of the path, split into directory levels when longer than a file name
    may be (snakemake/persistence/file.py: FilePersistence._record_path).
    """
    max_len = os.pathconf(".", "PC_NAME_MAX") if os.name == "posix" else 255
    name = urlsafe_b64encode(output.encode()).decode()
    parts = [name[i : i + max_len - 1] for i in range(0, len(name), max_len - 1)]
    return metadata.joinpath(*["@" + s for s in parts[:-1]], parts[-1])


def _record(output: str) -> dict | None:
    try:
        return json.loads(record_path(output).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _mtimes(output: str) -> set[float]:
    """The modification times Snakemake may have recorded for ``output`` (a symlink's own
    and its target's)."""
    return {os.stat(output, follow_symlinks=False).st_mtime, os.stat(output).st_mtime}


def unrecorded_outputs(p: Params, versions: dict) -> list[str]:
    """Outputs of the plan that exist but that Snakemake has no record of as they are:
    no record, a record of other params, code or software (``versions``: the current
    hashes, versions.py), or of another file (modified since Snakemake recorded it)."""
    found = []
    for j in jobs(p):
        params = [repr(rule_params(p, j, versions))]  # as Snakemake's record stores them
        for out in j.outs + j.metrics + j.plots:
            if not Path(out).exists():
                continue
            record = _record(out)
            if (
                record is None
                or record.get("params") != params
                or record.get("endtime") not in _mtimes(out)
            ):
                found.append(out)
    return found


def _dvc_status_clean() -> tuple[bool, str]:
    proc = subprocess.run(["dvc", "status"], capture_output=True, text=True)
    return proc.returncode == 0 and "up to date" in proc.stdout, proc.stdout + proc.stderr


def adopt_dvc_outputs(p: Params, profiles: list[str], snakefile: str, versions: dict) -> str | None:
    """Record DVC-restored outputs for Snakemake if DVC confirms them; what was done, or why not.

    None when there is nothing to do (every existing output has a record, or the project
    is not a DVC repository with a dvc.lock).
    """
    if os.environ.get(NESTED) or not (Path(".dvc").is_dir() and Path("dvc.lock").is_file()):
        return None
    if shutil.which("dvc") is None:
        return None
    unrecorded = unrecorded_outputs(p, versions)
    if not unrecorded:
        return None
    head = f"{len(unrecorded)} outputs have no Snakemake record as they are (restored by DVC?)"
    pipeline = yamlio.safe_load(Path("dvc.yaml").read_text()) if Path("dvc.yaml").exists() else {}
    if pipeline != dvc_pipeline(p, profiles):
        return f"{head}; dvc.yaml is not the pipeline of these params and profiles: left alone"
    clean, status = _dvc_status_clean()
    if not clean:
        return f"{head}; `dvc status` finds differences, so they are left alone:\n{status}"
    args = ["snakemake", "--touch", "--forceall", "--cores", "1", "--snakefile", snakefile]
    args += [*(["--configfile", *profiles] if profiles else []), "--quiet"]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, NESTED: "1"})
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        return f"{head}; recording them with `{' '.join(args)}` failed (above)"
    return f"{head}; they match dvc.lock (`dvc status`), so Snakemake recorded them"
