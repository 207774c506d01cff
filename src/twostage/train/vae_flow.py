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
import time

import numpy as np
import torch
import torch.nn.functional as F

from twostage import paths
from twostage.artifacts import write_json
from twostage.config import Params
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import ContinuousAutoencoder
from twostage.models.priors.flow import CouplingFlow
from twostage.runtime import pick_device
from twostage.train.common import CurveLog, check_finite, evaluation_steps, step_progress
from twostage.train.continuous_ae import reconstruction_metrics
from twostage.train.continuous_prior import bits_per_dim, mean_log_prob
from twostage.train.joint import encode_all, joint_setup, save_joint

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


@torch.no_grad()
def vae_flow_elbo(
    vae: ContinuousAutoencoder,
    flow: CouplingFlow,
    images: np.ndarray,
    device: torch.device,
    seed: int = 1234,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation ELBO in nats per image (one draw, fixed noise) and −ELBO in bits/pixel,
    the same estimator and keys as the plain VAE's (``train.continuous_ae.vae_elbo``)."""
    modes = vae.training, flow.training
    vae.eval()
    flow.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        terms = vae_flow_terms(vae, flow, x, gen)
        total += float(terms["recon"] + terms["kl"]) * len(x)
    vae.train(modes[0])
    flow.train(modes[1])
    elbo = -total / len(images)
    pixels = int(np.prod(images.shape[1:]))
    return {"val_elbo_nats": elbo, "val_neg_elbo_bits_per_pixel": -elbo / (pixels * math.log(2))}


def train_vae_flow(p: Params, name: str) -> dict:
    device = pick_device(p["device"])
    noise_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)  # posterior draws
    log = CurveLog(
        ["loss", "recon", "kl", "log_q", "log_prior", "val_elbo_nats", "val_mse", "val_psnr"]
    )
    joint = joint_setup(p, name, device, log, ae_key="vae", generators=(noise_gen,))
    spec, vae, flow, dim, val_images = joint.spec, joint.ae, joint.flow, joint.dim, joint.val_images
    beta = joint.ae_spec["beta"]
    eval_at = evaluation_steps(spec["steps"], spec["eval_every"])
    first = joint.resume.restore()

    start = time.perf_counter()
    progress = step_progress(first, spec["steps"], f"vae_flow {name}")
    for step in progress:
        x = to_tensor(joint.train_x[joint.batches.next_indices()].numpy(), device)
        loss, terms = vae_flow_loss(vae, flow, x, beta, noise_gen)
        check_finite(step, loss=loss, **terms)
        joint.opt.zero_grad(set_to_none=True)
        loss.backward()
        joint.opt.step()
        row = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        if step in eval_at:
            row["val_elbo_nats"] = vae_flow_elbo(vae, flow, val_images, device, p["seed"])[
                "val_elbo_nats"
            ]
            row.update(reconstruction_metrics(vae, val_images, device))
            progress.set_postfix(elbo=f"{row['val_elbo_nats']:.1f}", psnr=f"{row['val_psnr']:.2f}")
        log.add(step, **row)
        joint.resume.save_if_due(step, spec["steps"])
    train_time = time.perf_counter() - start

    # The last weights, as GLF: the latents move with the prior, so earlier ELBOs
    # are of other models (and the validation ELBO of the last one is reported).
    vae.eval()
    flow.eval()
    elbo = vae_flow_elbo(vae, flow, val_images, device, p["seed"])
    z_val = encode_all(vae, val_images, device)  # posterior means
    val_bits = bits_per_dim(mean_log_prob(flow, z_val), dim)
    out = paths.prior(name)
    save_joint(out["model"], joint, spec["steps"])
    log.write(out["curve"])
    metrics = {
        # The same keys as the plain VAE's prior stage (vae_prior), so the report compares them.
        "vae_val_elbo_nats": elbo["val_elbo_nats"],
        "vae_val_neg_elbo_bits_per_pixel": elbo["val_neg_elbo_bits_per_pixel"],
        "val_bits_per_token": val_bits,
        "val_bound": "flow_exact_nll_bits_per_latent_dim_of_posterior_means",
        **{f"vae_flow_{k}": v for k, v in reconstruction_metrics(vae, val_images, device).items()},
        "vae_flow_val_latent_std": float(z_val.std(0).mean()),
        "latent_dim": dim,
        "steps": spec["steps"],
        "parameters": sum(q.numel() for q in [*vae.parameters(), *flow.parameters()]),
        "train_time_s": train_time,
        "device": str(device),
    }
    write_json(out["metrics"], metrics)
    return metrics
