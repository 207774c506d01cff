"""The code and software each job runs with: hashes that Snakemake and DVC both compare.

A job's *code hash* covers its own code (codedeps.py: the modules its subcommand can
import, for the model kinds it uses) and the code hash of every job upstream of it, so
it says whether anything that made a result has changed since; its *software hash* is
that of the installed numeric packages (software.py).

Snakemake gets both among each rule's params (workflow/rules/common.smk). DVC hashes
files by their bytes: each stage of dvc.yaml lists its code's source files as deps
(:func:`code_files`), so DVC sees a code edit on its own, and reads the software hash
from ``paths.VERSIONS``, a params file that :func:`refresh` rewrites (only when a value
changed) whenever Snakemake parses the Snakefile or a ``twostage`` command runs. Each
stage also records the hashes it ran with in its metrics (``versions``), which the
report compares with the current ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from twostage import paths, yamlio
from twostage.artifacts import read_json, write_json, write_text
from twostage.config import Params
from twostage.plan import Job, job, jobs, param_values
from twostage.provenance import codedeps, software
from twostage.stages import STAGES

log = logging.getLogger("twostage")

HEADER = (
    "# Written by twostage (src/twostage/provenance/versions.py) "
    "whenever Snakemake parses the Snakefile\n"
    "# or a twostage command runs: each job's code hash (its own and its upstream jobs' code)\n"
    "# and the software hash of the packages listed. DVC reads software as a param of every\n"
    "# stage; run `twostage versions` to bring it up to date. Do not edit.\n"
)


def selectors(p: Params, j: Job) -> frozenset[str]:
    """The dispatch entries a job takes: its stage and the kinds of its models."""
    spec = STAGES.get(j.stage)
    table = spec.table if spec else None
    prior = ae = None
    if table == "runs":
        prior = p.prior_of_run(j.name)
    elif table == "priors":
        prior = j.name
    elif table == "autoencoders":
        ae = j.name
    kinds = set()
    if prior is not None:
        kinds.add(p.prior(prior)["kind"])
        ae = p.autoencoder_of_prior(prior)
    if ae is not None:
        kinds.add(p.autoencoder(ae)["kind"])
    return frozenset({j.stage, *kinds})


def code_hashes(p: Params, plan: list[Job] | None = None) -> dict[str, str]:
    """Each job's code hash, by DVC stage name: its own code, then its upstream jobs'."""
    plan = jobs(p) if plan is None else plan
    producer = {out: j.dvc_name for j in plan for out in j.outs + j.metrics + j.plots}
    found: dict[str, str] = {}
    for j in plan:  # upstream first (plan.jobs)
        upstream = sorted({found[producer[d]] for d in j.deps if producer.get(d) in found})
        own = codedeps.code_hash(selectors(p, j))
        found[j.dvc_name] = hashlib.sha256(" ".join([own, *upstream]).encode()).hexdigest()[:16]
    return found


# Where the package's source lies in the project: DVC's paths are relative to its root.
SOURCE = Path("src") / codedeps.PACKAGE


def code_files(p: Params, plan: list[Job] | None = None) -> dict[str, list[str]]:
    """Each job's code as files DVC can hash, by DVC stage name: the source and data files
    of its own code and of its upstream jobs' (so DVC, like the code hash, sees an edit
    in the whole chain it makes stale), relative to the project's root."""
    plan = jobs(p) if plan is None else plan
    producer = {out: j.dvc_name for j in plan for out in j.outs + j.metrics + j.plots}
    found: dict[str, set[str]] = {}
    for j in plan:  # upstream first (plan.jobs)
        own = {
            (SOURCE / f.relative_to(codedeps.ROOT)).as_posix()
            for f in codedeps.files(selectors(p, j))
        }
        for d in j.deps:
            own |= found.get(producer.get(d, ""), set())
        found[j.dvc_name] = own
    return {name: sorted(files) for name, files in found.items()}


def rule_params(p: Params, j: Job, versions: dict) -> str:
    """What a Snakemake rule's params hold for job ``j`` (workflow/rules/common.smk): the
    params values it reads, its code and software hashes, as one JSON string."""
    values = {
        **param_values(p, j),
        "code": versions["code"][j.dvc_name],
        "software": versions["software"],
    }
    return json.dumps(values, sort_keys=True)


def current(p: Params) -> dict:
    """What :data:`paths.VERSIONS` holds for the targets of ``p``."""
    found = software.versions()
    return {
        "software": software.software_hash(found),
        "packages": found,
        "code": code_hashes(p),
    }


def read(path: str | Path = paths.VERSIONS) -> dict:
    try:
        return yamlio.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        return {}


def refresh(p: Params, path: str | Path = paths.VERSIONS) -> dict:
    """Bring the versions file up to date for the targets of ``p``; return its content.

    Entries of jobs outside these targets (another profile's) are kept. The file is
    rewritten only when a value changed, so its modification time means a real change.
    """
    path = Path(path)
    old = read(path)
    new = current(p)
    content = {**new, "code": {**old.get("code", {}), **new["code"]}}
    if content != old:
        write_text(path, HEADER + yaml.safe_dump(content, sort_keys=False), checksum=False)
    return content


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two contents of the versions file, one line per change."""
    before = old.get("packages", {})
    lines = [
        f"software: {k} {before.get(k, 'unknown')} -> {v} (every job)"
        for k, v in new["packages"].items()
        if before.get(k) != v
    ]
    if old.get("software") not in (None, new["software"]) and not lines:
        lines.append("software: changed (every job)")
    old_code = old.get("code", {})
    lines += [f"code: {job}" for job, h in new["code"].items() if old_code.get(job) != h]
    return lines


def record(p: Params, stage: str, name: str, loaded: list[str]) -> None:
    """Add the hashes this job ran with to its metrics files (key ``versions``).

    ``loaded``: the project modules the process imported to run the job. One outside the
    job's static code dependencies (imported by a name codedeps.py cannot see) is logged
    and recorded, since its edits would not make the job stale.
    """
    j = job(p, stage, name)
    plan = jobs(p)
    if j.dvc_name not in {x.dvc_name for x in plan}:
        plan.append(j)
    entry = {"code": code_hashes(p, plan)[j.dvc_name], "software": software.software_hash()}
    from twostage.runtime import cpu_description  # torch: only in a job, not at parse time

    entry["machine"] = cpu_description()  # results differ between CPU kinds (bf16 or not)
    static = set(codedeps.closure(selectors(p, j)))
    undeclared = sorted(set(loaded) - static - codedeps.BOOKKEEPING)
    if undeclared:
        log.warning("imported outside the job's code dependencies: %s", ", ".join(undeclared))
        entry["undeclared_modules"] = undeclared
    for metrics in j.metrics:
        if metrics.endswith(".json") and Path(metrics).is_file():
            data = read_json(metrics)
            data["versions"] = entry
            write_json(metrics, data)


def recorded(metrics: str | Path) -> dict | None:
    """The ``versions`` a stage recorded in one of its metrics files (None: none recorded)."""
    try:
        data = json.loads(Path(metrics).read_text())
    except FileNotFoundError:
        return None
    return data.get("versions") if isinstance(data, dict) else None
