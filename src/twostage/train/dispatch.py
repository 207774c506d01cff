"""Route a training stage to the trainer of the params entry's ``kind`` (``kinds.KINDS``).

Each family has its own trainer module: train/vq.py (VQ autoencoders),
train/continuous_ae.py (ae, rae, vae), train/token_prior.py (absorbing, autoregressive),
train/continuous_prior.py (flow, gmm, vae_prior), train/glf.py and train/vae_flow.py
(autoencoder and flow trained jointly). Each table entry is imported only when used, so
a job's code dependencies (codedeps.py) hold only its own kind's trainer.
"""

from __future__ import annotations

from twostage.config import Params
from twostage.kinds import KINDS
from twostage.lazy import resolve

RESOLVES = ("AutoencoderKind.trainer", "PriorKind.trainer")  # for codedeps.py


def train_autoencoder(p: Params, name: str) -> dict:
    return resolve(KINDS[p.autoencoder(name)["kind"]].trainer)(p, name)


def train_prior(p: Params, name: str) -> dict:
    return resolve(KINDS[p.prior(name)["kind"]].trainer)(p, name)
