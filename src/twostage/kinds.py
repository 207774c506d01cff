"""Every model kind in one table: what builds it, what trains it, and how the DAG treats it.

Config validation (the schema's kind names, which prior sits on which autoencoder),
the trainers' dispatch (train/dispatch.py), the model packages (models/autoencoders,
models/priors) and the plan all read ``KINDS``; a new kind is one entry here plus its
own modules.

``KINDS`` is a dispatch table (codedeps.py): a job takes only the entries of the kinds
it uses, and of an entry's references only the roles (``PriorKind.model``,
``PriorKind.trainer``, ...) that a module in its closure resolves (a module-level
``RESOLVES`` names them), so a sampling job's code holds its prior's model but not its
trainer, and an evaluation job that decodes with the autoencoder not the prior's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

LOWER, HIGHER = "lower", "higher"  # which way a validation column is better
TOKEN_SAMPLERS = ("random", "even", "cosine", "confidence")  # the absorbing reverse process


@dataclass(frozen=True)
class Kind:
    """What every kind has.

    ``model``: ``"module:attr"`` of the network's builder.
    ``trainer``: ``"module:attr"`` of ``train(p, name) -> metrics``.
    ``continuous``: works with latent vectors instead of token grids.
    ``curves``: the validation columns of its ``train_log.csv`` that measure its training
    objective, each with the way it improves (report/convergence.py).
    ``single_process``: trained in one process whatever ``distributed.nproc`` says
    (small fits on cached latents, or a loop that is not data-parallel yet).
    """

    model: str
    trainer: str
    continuous: bool
    curves: tuple[tuple[str, str], ...] = ()
    single_process: bool = False


@dataclass(frozen=True)
class AutoencoderKind(Kind):
    """A stage-1 kind; ``model`` is called with ``(spec, channels, resolution)``."""

    stage: ClassVar[str] = "autoencoder"


@dataclass(frozen=True)
class PriorKind(Kind):
    """A stage-2 kind; ``model`` is called with ``(spec, codebook_size, length)`` for a
    token prior, ``(spec, latent_dim)`` for a continuous one.

    ``sits_on``: the autoencoder kinds it can model the latents of.
    ``joint``: its training job trains its own autoencoder (of its entry's architecture)
    with it, from the images, and saves it in the prior's checkpoint.
    ``samplers``: the ``sampler`` values a token prior's runs may name (a continuous
    prior's runs sample ``ancestral``).
    ``bound``: what its validation bound is, as the training metrics name it.
    ``one_token_per_step``: a run's ``steps`` must equal the tokens per image.
    ``sample_fd_sampler``: the sampler of its training-time sample FD (``steps``:
    ``sample_fd_steps``, default all reverse steps); None: ``length`` steps, raster order.
    ``edits``: the DAG gives it inpainting and large samples (sample/editing.py).
    ``scores_with_autoencoder``: its training reads the trained autoencoder and the
    validation images (vae_prior scores the VAE's ELBO with them).
    ``conditional``: it has a class-conditional form (``condition: class``).
    """

    stage: ClassVar[str] = "prior"
    sits_on: tuple[str, ...] = ()
    joint: bool = False
    samplers: tuple[str, ...] = ()
    bound: str = ""
    one_token_per_step: bool = False
    sample_fd_sampler: str | None = None
    edits: bool = False
    scores_with_autoencoder: bool = False
    conditional: bool = False


KINDS = {
    "vq": AutoencoderKind(
        model="twostage.models.autoencoders.vq:VQAutoencoder",
        trainer="twostage.train.vq:train_vq_autoencoder",
        continuous=False,
        curves=(("val_mse", LOWER),),
    ),
    # deterministic AE, regularized AE, VAE
    "ae": AutoencoderKind(
        model="twostage.models.autoencoders.continuous:ContinuousAutoencoder",
        trainer="twostage.train.continuous_ae:train_continuous_autoencoder",
        continuous=True,
        curves=(("val_mse", LOWER),),
    ),
    "rae": AutoencoderKind(
        model="twostage.models.autoencoders.continuous:ContinuousAutoencoder",
        trainer="twostage.train.continuous_ae:train_continuous_autoencoder",
        continuous=True,
        curves=(("val_mse", LOWER),),
    ),
    "vae": AutoencoderKind(
        model="twostage.models.autoencoders.continuous:ContinuousAutoencoder",
        trainer="twostage.train.continuous_ae:train_continuous_autoencoder",
        continuous=True,
        curves=(("val_elbo_nats", HIGHER),),  # its ELBO
    ),
    "absorbing": PriorKind(
        conditional=True,
        model="twostage.models.priors.absorbing:AbsorbingDiffusion",
        trainer="twostage.train.token_prior:train_token_prior",
        continuous=False,
        curves=(("val_bits", LOWER),),
        sits_on=("vq",),
        samplers=TOKEN_SAMPLERS,
        bound="elbo",
        sample_fd_sampler="random",  # the paper's reverse process
        edits=True,
    ),
    "autoregressive": PriorKind(
        conditional=True,
        model="twostage.models.priors.autoregressive:AutoregressivePrior",
        trainer="twostage.train.token_prior:train_token_prior",
        continuous=False,
        curves=(("val_bits", LOWER),),
        sits_on=("vq",),
        samplers=("autoregressive",),
        bound="exact_nll",
        one_token_per_step=True,
    ),
    "flow": PriorKind(
        model="twostage.models.priors.flow:build_flow",
        curves=(("val_bits", LOWER),),
        trainer="twostage.train.continuous_prior:train_flow",
        continuous=True,
        single_process=True,
        sits_on=("ae", "rae", "vae"),
    ),
    "glf": PriorKind(
        model="twostage.models.priors.flow:build_flow",
        curves=(("val_mse", LOWER), ("val_bits", LOWER)),  # both halves of the joint training
        trainer="twostage.train.glf:train_glf",
        continuous=True,
        joint=True,
        sits_on=("ae",),  # GLF trains its own deterministic AE of that architecture
    ),
    "gmm": PriorKind(
        conditional=True,
        model="twostage.models.priors.gmm:build_gmm",
        curves=(("val_bits", LOWER),),  # fitted once: one evaluation
        trainer="twostage.train.continuous_prior:train_gmm",
        continuous=True,
        single_process=True,
        sits_on=("ae", "rae", "vae"),
    ),
    "vae_prior": PriorKind(
        model="twostage.models.priors.continuous:build_standard_normal",
        curves=(("val_bits", LOWER),),  # scored once: one evaluation
        scores_with_autoencoder=True,
        trainer="twostage.train.continuous_prior:vae_prior",
        continuous=True,
        single_process=True,
        sits_on=("vae",),
    ),
    "vae_flow": PriorKind(
        model="twostage.models.priors.flow:build_flow",
        curves=(("val_elbo_nats", HIGHER),),  # the VAE's ELBO with the flow as its prior
        trainer="twostage.train.vae_flow:train_vae_flow",
        continuous=True,
        joint=True,
        single_process=True,  # its loop is not data-parallel yet
        sits_on=("vae",),  # trains its own VAE of that architecture with the flow
    ),
}


def kinds_of(stage: str, **facts: bool) -> tuple[str, ...]:
    """The kinds of a stage with the given facts, in table order."""
    return tuple(
        name
        for name, kind in KINDS.items()
        if kind.stage == stage and all(getattr(kind, f) == v for f, v in facts.items())
    )


# Kinds working with latent vectors instead of token grids (docs/methods.md, "Continuous latents").
CONTINUOUS_AUTOENCODERS = kinds_of("autoencoder", continuous=True)
CONTINUOUS_PRIORS = kinds_of("prior", continuous=True)
JOINT_PRIORS = kinds_of("prior", joint=True)
SINGLE_PROCESS_KINDS = tuple(name for name, kind in KINDS.items() if kind.single_process)
