"""VAE with a flow prior, trained jointly (GLF chapter eq. 3.4; docs/methods.md).

    ELBO(x) = E_q[log p(x|z)] + E_q[log p_flow(z)] − E_q[log q(z|x)]

one reparameterised draw z = μ + σ·ε per image. The KL term of the plain VAE
against N(0, I) is replaced by its Monte-Carlo form against the flow's exact
density (change of variables, log|det| included), so encoder, decoder and flow
all follow the gradient of the same bound. ``beta`` of the VAE entry weighs
the (log q − log p_flow) term in training as it weighs the KL of the plain
VAE; the reported ELBO always uses weight 1.

In the DAG this is the ``train_prior`` job of a ``vae_flow`` prior, wired as
GLF: its ``autoencoder`` entry (kind vae) gives the architecture, the job
trains a fresh VAE of that architecture with the flow from the images, and
saves both in the prior's model.pt; runs of the prior decode with that VAE.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from twostage import paths
from twostage.artifacts import write_json
from twostage.config import Params
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import ContinuousAutoencoder
from twostage.models.priors.flow import CouplingFlow
from twostage.train.common import check_finite
from twostage.train.continuous_ae import elbo_metrics
from twostage.train.continuous_prior import bits_per_dim, mean_log_prob
from twostage.train.joint import encode_all, joint_setup, save_joint
from twostage.train.reconstruction import evaluating, reconstruction_metrics

LOG_2PI = math.log(2 * math.pi)


def vae_flow_terms(
    vae: ContinuousAutoencoder,
    flow: CouplingFlow,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image terms of the negative ELBO, in nats (batch means).

    ``recon`` = −log p(x|z) (Bernoulli pixels, as the plain VAE), ``log_q`` =
    log q(z|x), ``log_prior`` = log p_flow(z), ``kl`` = log_q − log_prior (the
    one-draw estimate of KL(q(z|x) || p_flow)); −ELBO = recon + kl.
    """
    mu, logvar = vae.posterior(x)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    z = mu + (0.5 * logvar).exp() * eps
    logits = 2 * vae.decode_raw(z)
    target = (x + 1) / 2
    recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
    # log N(z; μ, σ²) with (z − μ)/σ = ε exactly: no division by a tiny σ.
    log_q = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(1)
    log_prior = flow.log_prob(z)
    return {
        "recon": recon.mean(),
        "log_q": log_q.mean(),
        "log_prior": log_prior.mean(),
        "kl": (log_q - log_prior).mean(),
    }


def vae_flow_loss(
    vae: ContinuousAutoencoder,
    flow: CouplingFlow,
    x: torch.Tensor,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss recon + β·(log q − log p_flow) and its terms."""
    terms = vae_flow_terms(vae, flow, x, generator)
    return terms["recon"] + beta * terms["kl"], terms


def vae_flow_elbo(vae, flow, images: np.ndarray, device: torch.device, seed: int = 1234) -> dict:
    """Validation ELBO in nats per image (one draw, fixed noise) and −ELBO in bits/pixel,
    the same estimator and keys as the plain VAE's (``train.continuous_ae.vae_elbo``), of
    the autoencoder ``vae`` with the prior ``flow``."""

    def neg_elbo(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        terms = vae_flow_terms(vae, flow, x, gen)
        return terms["recon"] + terms["kl"]

    with evaluating(vae, flow):
        return elbo_metrics(neg_elbo, images, device, seed)


def train_vae_flow(p: Params, name: str) -> dict:
    columns = ["loss", "recon", "kl", "log_q", "log_prior", "val_elbo_nats", "val_mse", "val_psnr"]
    joint = joint_setup(p, name, columns)
    run, spec, vae, flow, dim = joint.run, joint.spec, joint.ae, joint.flow, joint.dim
    device, val_images = run.device, joint.val_images
    beta = joint.ae_spec["beta"]
    noise_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)  # posterior draws
    joint.resume(ae_key="vae", generators=(noise_gen,))

    for step in run.steps(f"vae_flow {name}"):
        x = to_tensor(joint.train_x[joint.batches.next_indices()].numpy(), device)
        loss, terms = vae_flow_loss(vae, flow, x, beta, noise_gen)
        check_finite(step, loss=loss, **terms)
        joint.opt.zero_grad(set_to_none=True)
        loss.backward()
        joint.opt.step()
        row = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        if step in run.eval_at:
            elbo = vae_flow_elbo(vae, flow, val_images, device, p["seed"])
            row["val_elbo_nats"] = elbo["val_elbo_nats"]
            row.update(reconstruction_metrics(vae, val_images, device))
            run.progress.set_postfix(
                elbo=f"{row['val_elbo_nats']:.1f}", psnr=f"{row['val_psnr']:.2f}"
            )
        run.log_step(step, row)

    # The last weights, as GLF: the latents move with the prior, so earlier ELBOs
    # are of other models (and the validation ELBO of the last one is reported).
    vae.eval()
    flow.eval()
    elbo = vae_flow_elbo(vae, flow, val_images, device, p["seed"])
    z_val = encode_all(vae, val_images, device)  # posterior means
    val_bits = bits_per_dim(mean_log_prob(flow, z_val), dim)
    out = paths.prior(name)
    save_joint(out["model"], joint, spec["steps"])
    run.log.write(out["curve"])
    metrics = {
        # The same keys as the plain VAE's prior stage (vae_prior), so the report compares them.
        **{f"vae_{k}": v for k, v in elbo.items()},
        "val_bits_per_token": val_bits,
        "val_bound": "flow_exact_nll_bits_per_latent_dim_of_posterior_means",
        **{f"vae_flow_{k}": v for k, v in reconstruction_metrics(vae, val_images, device).items()},
        "vae_flow_val_latent_std": float(z_val.std(0).mean()),
        "latent_dim": dim,
        **run.tail(vae, flow),
    }
    write_json(out["metrics"], metrics)
    return metrics
