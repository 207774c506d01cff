"""Route a training stage to the trainer of the params entry's ``kind``.

Each family has its own trainer module: train/vq.py (VQ autoencoders),
train/continuous_ae.py (ae, rae, vae), train/token_prior.py (absorbing, autoregressive),
train/continuous_prior.py (flow, gmm, vae_prior), train/glf.py and train/vae_flow.py
(autoencoder and flow trained jointly). Each table entry is imported only when used, so
a job's code dependencies (codedeps.py) hold only its own kind's trainer.
"""

from __future__ import annotations

from twostage.config import Params
from twostage.lazy import resolve

AUTOENCODER_TRAINERS = {
    "vq": "twostage.train.vq:train_vq_autoencoder",
    "ae": "twostage.train.continuous_ae:train_continuous_autoencoder",
    "rae": "twostage.train.continuous_ae:train_continuous_autoencoder",
    "vae": "twostage.train.continuous_ae:train_continuous_autoencoder",
}

PRIOR_TRAINERS = {
    "absorbing": "twostage.train.token_prior:train_token_prior",
    "autoregressive": "twostage.train.token_prior:train_token_prior",
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
