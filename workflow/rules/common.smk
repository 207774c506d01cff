# Shared by every rule: the validated params, the plan, and how a stage is called.
import os

from snakemake.logging import logger
from snakemake_interface_executor_plugins.settings import ExecMode

from twostage import paths, plan
from twostage.provenance import adopt, versions
from twostage.config import ConfigError, load_params
from twostage.kinds import SINGLE_PROCESS_KINDS

# Profiles are the files given with --configfile; the twostage loader merges
# them over params/*.yaml itself so it can name the file of any bad key.
PROFILES = [os.path.relpath(f) for f in workflow.overwrite_configfiles]
try:
    P = load_params(PROFILES)
except ConfigError as exc:
    raise WorkflowError(f"invalid params: {exc}") from None

PROFILE_ARGS = "".join(f" --profile {f}" for f in PROFILES)

# Each job's code hash (its modules and its upstream jobs') and the software hash, the
# same values DVC reads from results/versions.yaml, which this brings up to date.
VERSIONS = versions.refresh(P)

# Outputs that DVC restored carry no Snakemake record: take them over when dvc.lock
# confirms them (src/twostage/provenance/adopt.py), so both tools agree that nothing is to do.
if workflow.exec_mode == ExecMode.DEFAULT:
    ADOPTED = adopt.adopt_dvc_outputs(P, PROFILES, workflow.main_snakefile, VERSIONS)
    if ADOPTED:
        logger.info(f"twostage: {ADOPTED}")


wildcard_constraints:
    name="[A-Za-z0-9][A-Za-z0-9_-]*",


def job_inputs(stage):
    """Input function: the plan's dependencies of ``stage`` for this name."""
    return lambda w: plan.job(P, stage, w.name).deps


DOWNSTREAM = plan.downstream_counts(P)

# Runs of class-conditional priors (their sampling also writes classes.npy): a name
# pattern for the rule sample_conditional; one that matches nothing when there are none.
CONDITIONAL_RUNS = "|".join(plan.conditional_runs(P)) or "(?!)"


def job_priority(stage):
    """Priority function: the number of jobs downstream of this one (longest chains first)."""
    return lambda w: DOWNSTREAM.get((stage, w.name), 0)


def job_params(stage):
    """The params values a job reads, its code and software hashes: a change in them
    (only) reruns the job."""

    def values(w):
        return versions.rule_params(P, plan.job(P, stage, w.get("name", "")), VERSIONS)

    return values


def stage_cmd(stage):
    """Shell command of a stage: the same CLI call DVC runs, logged to the rule's log."""
    return (
        f"TWOSTAGE_THREADS={{threads}} twostage{PROFILE_ARGS} {stage} {{wildcards.name}}"
        " > {log} 2>&1"
    )


# Threads of a training or sampling job: half of --cores, so that two such jobs run side
# by side (these small models gain less from a second thread than from a second job);
# 8 where no core count is given (cluster executors: the threads each job requests).
TRAINING_THREADS = max(1, (workflow._cores or 16) // 2)

# Software of every rule (used with --sdm conda; the venv route needs nothing).
TWOSTAGE_ENV = "../envs/twostage.yaml"

# GPUs a training job uses: one per data-parallel process (params/config.yaml:
# distributed.nproc). Every rule declares gpu, mem_mb and runtime (minutes), so
# `--resources gpu=N` caps GPU jobs locally and the SLURM executor requests them.
TRAINING_GPUS = P.data.get("distributed", {}).get("nproc", 1)


def training_gpus(table):
    """Resource function: distributed.nproc GPUs for a data-parallel training job, one
    for the kinds that train in one process whatever nproc says (flow, gmm, vae_prior).
    """
    return lambda w: (
        1 if P[table][w.name]["kind"] in SINGLE_PROCESS_KINDS else TRAINING_GPUS
    )
