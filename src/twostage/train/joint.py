"""What GLF (glf.py) and VAE + flow (vae_flow.py) share: an autoencoder and a flow on its
latents, trained together from the images by one optimiser, and saved together in the
prior's model.pt, so that runs of the prior decode with the autoencoder trained with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twostage.artifacts import save_torch
from twostage.config import Params
from twostage.data.prepare import load_split
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import ContinuousAutoencoder
from twostage.models.priors.flow import CouplingFlow
from twostage.train import distributed
from twostage.train.common import InfiniteBatches
from twostage.train.continuous_ae import autoencoder_checkpoint
from twostage.train.continuous_prior import prior_checkpoint
from twostage.train.scaffold import Training


@dataclass
class Joint:
    """One joint training's pieces, as :func:`joint_setup` makes them."""

    run: Training
    spec: dict  # the prior's entry; ae_spec and ds_spec are its autoencoder's and dataset's
    ae_spec: dict
    ds_spec: dict
    ae: ContinuousAutoencoder
    flow: CouplingFlow
    opt: torch.optim.Optimizer
    batches: InfiniteBatches
    train_x: torch.Tensor
    val_images: np.ndarray

    @property
    def dim(self) -> int:
        return self.ae_spec["latent_dim"]

    def resume(self, ae_key: str = "ae", generators: tuple[torch.Generator, ...] = ()) -> None:
        """Load the saved state of this training, if any (``Training.resume``): the models,
        optimiser, batches and log, the batches' generator followed by ``generators``.
        ``ae_key`` names the autoencoder in it (VAE + flow's states say "vae": a new name
        would make a run's saved state unloadable)."""
        self.run.resume(
            {ae_key: self.ae, "flow": self.flow, "optimizer": self.opt, "batches": self.batches},
            generators,
            tied_to=(self.ae_spec, self.ds_spec),
        )


def joint_setup(
    p: Params, name: str, columns: list[str], ctx: distributed.Context | None = None
) -> Joint:
    """The seeded scaffold (``columns``: the log's; ``ctx`` of a data-parallel trainer), data,
    models, optimiser and batches of prior NAME's training."""
    spec = p.prior(name)
    ae_spec = p.autoencoder(spec["autoencoder"])
    ds_spec = p.dataset(ae_spec["dataset"])
    run = Training(p, "train_prior", name, spec, columns, ctx)  # before the models: they draw
    device = run.device
    train_images, _ = load_split(ae_spec["dataset"], "train")
    val_images, _ = load_split(ae_spec["dataset"], "val")
    ae = ContinuousAutoencoder(ae_spec, ds_spec["channels"], ds_spec["resolution"]).to(device)
    dim = ae_spec["latent_dim"]
    flow = CouplingFlow(dim, spec["blocks"], spec["hidden"], spec["layers"]).to(device)
    # One optimiser; weight decay on the flow only, as in the paper.
    opt = torch.optim.Adam(
        [
            {"params": ae.parameters(), "weight_decay": 0.0},
            {"params": flow.parameters(), "weight_decay": spec["weight_decay"]},
        ],
        lr=spec["lr"],
    )
    batches = InfiniteBatches(len(train_images), spec["batch_size"], run.gen)
    train_x = torch.from_numpy(train_images)
    return Joint(run, spec, ae_spec, ds_spec, ae, flow, opt, batches, train_x, val_images)


def save_joint(path: str | Path, joint: Joint, step: int) -> None:
    """The flow's checkpoint as any flow prior's, with the autoencoder to decode with in it."""
    ae = autoencoder_checkpoint(joint.ae_spec, joint.ds_spec, joint.ae)
    flow = prior_checkpoint(joint.spec, joint.dim, joint.flow.state_dict(), step)
    save_torch(path, {**flow, "autoencoder": ae})


@torch.no_grad()
def encode_all(ae: ContinuousAutoencoder, images: np.ndarray, device: torch.device) -> torch.Tensor:
    """The latents of ``images`` in eval mode (a VAE's posterior means)."""
    was_training = ae.training
    ae.eval()
    z = torch.cat(
        [ae.encode(to_tensor(images[i : i + 256], device)) for i in range(0, len(images), 256)]
    )
    ae.train(was_training)
    return z
