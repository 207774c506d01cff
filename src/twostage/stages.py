"""Every stage of the DAG in one table: what runs it, what it is built from, how it runs.

A stage's name is its Snakemake rule, its ``plan.Job.stage``, its folder under
``results/logs`` and ``results/benchmarks`` and the prefix of its ``dvc.yaml`` stages; its
subcommand is the same name with dashes (:func:`command`). The CLI (subcommands, the
params table a NAME must be in, the seed, data-parallel launch), the plan (the job of a
stage, the producer of a file), ``dvc.yaml`` (through the plan) and the rules' log,
benchmark, params and shell lines (``workflow/rules/common.smk``) all read ``STAGES``.
``report`` is a DAG stage of no name and no table: ``cli.COMMANDS`` holds it.

``STAGES`` is a dispatch table (provenance/codedeps.py): a job takes only its own
stage's entry, and of that entry only the roles a module in its closure resolves
(``Stage.function``: cli.py; ``Stage.job``: plan.py), so adding a stage or editing
another stage's entry is no code of this job.
"""

from __future__ import annotations

from dataclasses import dataclass

from twostage.kinds import SINGLE_PROCESS_KINDS


@dataclass(frozen=True)
class Stage:
    """One stage of the DAG.

    ``function``: ``"module:function"`` taking ``(params, name)``, what the subcommand runs.
    ``job``: ``"module:function"`` taking ``(params, name)``, the ``plan.Job`` it builds.
    ``table``: the params table its NAME is an entry of.
    ``seeded``: trains or samples with the seed of its entry (a replicate's own, seeds.py);
    every other stage keeps the global seed, so that the evaluation protocol (the real
    subset PRDC compares against, KID's subsets) is the same for every run and replicate.
    ``data_parallel``: has a data-parallel training loop (train/distributed.py), for the
    kinds that are not ``single_process``.
    """

    function: str
    job: str
    table: str
    seeded: bool = False
    data_parallel: bool = False


# A stage's module is imported only when that stage runs: `twostage validate` stays
# instant, and a stage's code dependencies (codedeps.py) hold no other stage's code.
STAGES: dict[str, Stage] = {
    "prepare_data": Stage(
        function="twostage.data.prepare:prepare",
        job="twostage.plan:prepare_data_job",
        table="datasets",
    ),
    "train_classifier": Stage(
        function="twostage.train.classifier:train_classifier",
        job="twostage.plan:train_classifier_job",
        table="datasets",
    ),
    "extract_features": Stage(
        function="twostage.evaluate.features:extract_real_features",
        job="twostage.plan:extract_features_job",
        table="datasets",
    ),
    "train_autoencoder": Stage(
        function="twostage.train.dispatch:train_autoencoder",
        job="twostage.plan:train_autoencoder_job",
        table="autoencoders",
        seeded=True,
        data_parallel=True,
    ),
    "encode": Stage(
        function="twostage.data.latents:encode",
        job="twostage.plan:encode_job",
        table="autoencoders",
    ),
    "calibrate": Stage(
        function="twostage.evaluate.stages:calibrate",
        job="twostage.plan:calibrate_job",
        table="autoencoders",
    ),
    "train_prior": Stage(
        function="twostage.train.dispatch:train_prior",
        job="twostage.plan:train_prior_job",
        table="priors",
        seeded=True,
        data_parallel=True,
    ),
    "inpaint": Stage(
        function="twostage.sample.editing:inpaint",
        job="twostage.plan:inpaint_job",
        table="priors",
    ),
    "large_samples": Stage(
        function="twostage.sample.editing:large_samples",
        job="twostage.plan:large_samples_job",
        table="priors",
    ),
    "sample": Stage(
        function="twostage.sample.sampler:sample_run",
        job="twostage.plan:sample_job",
        table="runs",
        seeded=True,
    ),
    "evaluate": Stage(
        function="twostage.evaluate.stages:evaluate_run",
        job="twostage.plan:evaluate_job",
        table="runs",
    ),
    "evaluate_reconstruction": Stage(
        function="twostage.evaluate.reconstruction:evaluate_reconstruction",
        job="twostage.plan:evaluate_reconstruction_job",
        table="autoencoders",
    ),
    "neighbours": Stage(
        function="twostage.evaluate.neighbours:nearest_neighbours",
        job="twostage.plan:neighbours_job",
        table="runs",
    ),
}


def data_parallel(p, stage: str, name: str) -> bool:
    """True if the job of ``stage`` building ``name`` has a data-parallel training loop:
    a data-parallel stage, for a kind that does not train in one process (flow, gmm,
    vae_prior). The CLI's launch and the rules' GPU requests both ask this."""
    spec = STAGES.get(stage)
    return (
        spec is not None
        and spec.data_parallel
        and p[spec.table][name]["kind"] not in SINGLE_PROCESS_KINDS
    )


def command(stage: str) -> str:
    """The subcommand of ``stage`` (``train_prior`` → ``train-prior``)."""
    return stage.replace("_", "-")


def stage_of(command: str) -> str:
    """The stage a subcommand runs (``train-prior`` → ``train_prior``)."""
    return command.replace("-", "_")
