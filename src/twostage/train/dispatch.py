"""Route a training stage to the trainer of the params entry's ``kind``.

VQ autoencoders and token priors keep their own trainers; the continuous family has
its own modules. Each table entry is imported only when used, so
a job's code dependencies (codedeps.py) hold only its own kind's trainer.
"""

from __future__ import annotations

from twostage.config import Params
from twostage.lazy import resolve

AUTOENCODER_TRAINERS = {
    "vq": "twostage.train.autoencoder:train_autoencoder",
    "ae": "twostage.train.continuous:train_continuous_autoencoder",
    "rae": "twostage.train.continuous:train_continuous_autoencoder",
    "vae": "twostage.train.continuous:train_continuous_autoencoder",
}

PRIOR_TRAINERS = {
    "absorbing": "twostage.train.prior:train_prior",
    "autoregressive": "twostage.train.prior:train_prior",
    "glf": "twostage.train.glf:train_glf",
    "vae_flow": "twostage.train.vae_flow:train_vae_flow",
    "flow": "twostage.train.continuous_prior:train_flow",
    "gmm": "twostage.train.continuous_prior:train_gmm",
    "vae_prior": "twostage.train.continuous_prior:vae_prior",
}


def train_autoencoder(p: Params, name: str) -> dict:
    return resolve(AUTOENCODER_TRAINERS[p.autoencoder(name)["kind"]])(p, name)


def train_prior(p: Params, name: str) -> dict:
    return resolve(PRIOR_TRAINERS[p.prior(name)["kind"]])(p, name)
