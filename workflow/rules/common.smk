# Shared by every rule: the validated params, the plan, and how a stage is called.
import os

from snakemake.logging import logger
from snakemake_interface_executor_plugins.settings import ExecMode

from twostage import paths, plan
from twostage.provenance import adopt, versions
from twostage.config import ConfigError, load_params
from twostage.stages import STAGES, command, data_parallel

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


DOWNSTREAM = plan.downstream_counts(P)

# Runs of class-conditional priors (their sampling also writes classes.npy): a name
# pattern for the rule sample_conditional; one that matches nothing when there are none.
CONDITIONAL_RUNS = "|".join(plan.conditional_runs(P)) or "(?!)"

# GPUs a training job uses: one per data-parallel process (params/config.yaml:
# distributed.nproc). Every rule declares gpu, mem_mb and runtime (minutes), so
# `--resources gpu=N` caps GPU jobs locally and the SLURM executor requests them.
TRAINING_GPUS = P.data.get("distributed", {}).get("nproc", 1)


class StageRule:
    """What the rules of a stage say alike, from its one name: an entry of STAGES
    (src/twostage/stages.py), or "report". A rules file binds it once before the rules of
    its stage, which take their input, log, benchmark, priority and params lines from it;
    outputs, threads and resources stay in the rule, and the shell line is stage_shell's.
    """

    def __init__(self, stage):
        name = "{name}" if stage in STAGES else None
        self.log = paths.log(stage, name)
        self.benchmark = paths.benchmark(stage, name)
        # The plan's dependencies of the job for this name.
        self.input = lambda w: plan.job(P, stage, w.name).deps
        # The number of jobs downstream of this one (longest chains first).
        self.priority = lambda w: DOWNSTREAM.get((stage, w.name), 0)
        # The params values the job reads, its code and software hashes: a change in
        # them (only) reruns the job.
        self.params = lambda w: versions.rule_params(
            P, plan.job(P, stage, w.get("name", "")), VERSIONS
        )
        # A data-parallel job's GPUs: distributed.nproc; one for every other job.
        self.gpus = lambda w: TRAINING_GPUS if data_parallel(P, stage, w.name) else 1


def stage_shell(stage):
    """Shell command of a stage: the same CLI call DVC runs (plan.command), logged to the
    rule's log. Not a StageRule attribute: Snakemake evaluates a rule's shell line again
    when the job runs, and by then `stage` is bound to the last rules file's last stage.
    """
    if stage not in STAGES:
        return f"twostage{PROFILE_ARGS} {stage} > {{log}} 2>&1"
    return (
        f"TWOSTAGE_THREADS={{threads}} twostage{PROFILE_ARGS} {command(stage)}"
        " {wildcards.name} > {log} 2>&1"
    )


# Threads of a training or sampling job: half of --cores, so that two such jobs run side
# by side (these small models gain less from a second thread than from a second job);
# 8 where no core count is given (cluster executors: the threads each job requests),
# where Snakemake's public workflow.cores raises instead of answering.
try:
    CORES = workflow.cores
except WorkflowError:
    CORES = None
TRAINING_THREADS = max(1, (CORES or 16) // 2)

# Software of every rule (used with --sdm conda; the venv route needs nothing).
TWOSTAGE_ENV = "../envs/twostage.yaml"
