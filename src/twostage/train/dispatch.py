"""Route a training stage to the trainer of the params entry's ``kind``.

VQ autoencoders and token priors keep their own trainers; the continuous
family has its own modules, imported only when used.
"""

from __future__ import annotations

from twostage.config import CONTINUOUS_AUTOENCODERS, Params


def train_autoencoder(p: Params, name: str) -> dict:
    if p.autoencoder(name)["kind"] in CONTINUOUS_AUTOENCODERS:
        from twostage.train.continuous import train_continuous_autoencoder

        return train_continuous_autoencoder(p, name)
    from twostage.train.autoencoder import train_autoencoder as train_vq_autoencoder

    return train_vq_autoencoder(p, name)


def train_prior(p: Params, name: str) -> dict:
    kind = p.prior(name)["kind"]
    if kind == "glf":
        from twostage.train.glf import train_glf

        return train_glf(p, name)
    if kind == "vae_flow":
        from twostage.train.vae_flow import train_vae_flow

        return train_vae_flow(p, name)
    if kind in ("flow", "gmm", "vae_prior"):
        from twostage.train import continuous_prior

        trainer = {"flow": "train_flow", "gmm": "train_gmm", "vae_prior": "vae_prior"}[kind]
        return getattr(continuous_prior, trainer)(p, name)
    from twostage.train.prior import train_prior as train_token_prior

    return train_token_prior(p, name)
