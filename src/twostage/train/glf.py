"""Generative Latent Flow (GLF, eq. 3.7): autoencoder and flow trained together.

    L = β · ||x − D(E(x))||² + NLL_flow(sg[E(x)])

With ``stop_gradient: true`` (the paper's GLF) the flow's NLL reaches only the
flow, so the encoder is shaped by reconstruction alone. With ``false`` (the
paper's "regularized GLF") the NLL also pulls on the encoder, which can shrink
the latents to drive the NLL down without bound: the instability the paper reports.
The log follows it step by step: ``nll`` (the flow's NLL of the batch latents, nats
per vector) and ``latent_std`` (their spread), and at each evaluation the validation
NLL in bits per dimension and spread.

A diverging regularized GLF is the finding, not a crash: if its loss turns
non-finite, training stops there, keeps the last (finite) weights, and records
``diverged_at_step`` in metrics.json. With the stop-gradient, as for every other
model, a non-finite loss stops the stage with an error.

In the DAG this is the ``train_prior`` job of a ``glf`` prior. Its
``autoencoder`` entry (kind ae) gives the architecture; the job trains a fresh
autoencoder of that architecture with the flow from the images, and saves both
in the prior's model.pt. Runs of a glf prior decode with this autoencoder.

Data-parallel under torchrun when ``distributed.nproc`` > 1 (train/distributed.py):
autoencoder and flow are one DDP module, the autoencoder's batch norms use the
global batch's statistics, rank 0 validates and writes.
"""

from __future__ import annotations

import logging
import math

import torch

from twostage import paths
from twostage.artifacts import write_json
from twostage.config import Params
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import ContinuousAutoencoder, squared_error
from twostage.models.priors.flow import CouplingFlow
from twostage.train import distributed
from twostage.train.common import check_finite
from twostage.train.continuous_prior import bits_per_dim, mean_log_prob
from twostage.train.joint import encode_all, joint_setup, save_joint
from twostage.train.reconstruction import reconstruction_metrics

logger = logging.getLogger("twostage")


def glf_loss(
    ae: ContinuousAutoencoder,
    flow: CouplingFlow,
    x: torch.Tensor,
    beta: float,
    stop_gradient: bool = True,
    latents: list | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, flow NLL in nats per latent vector), batch means.

    ``latents``, when given, receives the batch's (detached) latent vectors.
    """
    z = ae.encode(x)
    if latents is not None:
        latents.append(z.detach())
    recon = squared_error(ae.decode(z), x)
    nll = -flow.log_prob(z.detach() if stop_gradient else z).mean()
    return beta * recon + nll, recon, nll


def global_latent_std(z: torch.Tensor, ctx: distributed.Context) -> float:
    """Mean over dimensions of the latents' std over the *global* batch.

    Under torchrun each rank holds an equal slice; a slice's spread is not the batch's
    (it is smaller on average), so the first two moments are averaged over the ranks.
    """
    moments = ctx.mean(torch.stack([z.mean(0), (z * z).mean(0)]).double())
    n = z.shape[0] * ctx.world_size
    variance = (moments[1] - moments[0] ** 2).clamp_min(0) * n / (n - 1)
    return float(variance.sqrt().mean())


def weights_finite(*modules: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for m in modules for t in m.state_dict().values())


@distributed.in_process_group
def train_glf(p: Params, name: str, ctx: distributed.Context) -> dict:
    columns = ["loss", "recon", "nll", "latent_std", "val_bits", "val_mse", "val_psnr"]
    joint = joint_setup(p, name, [*columns, "val_latent_std"], ctx)
    run, spec, ae, flow, dim = joint.run, joint.spec, joint.ae, joint.flow, joint.dim
    device, val_images = run.device, joint.val_images
    beta, stop_gradient = spec["beta"], spec["stop_gradient"]
    z_batch: list[torch.Tensor] = []  # the batch's latents, filled by glf_loss
    loss_of = distributed.loss_module(
        torch.nn.ModuleDict({"ae": ae, "flow": flow}),
        ctx,
        device,
        lambda m, x: glf_loss(m["ae"], m["flow"], x, beta, stop_gradient, z_batch),
    )
    joint.resume()

    diverged_at = None
    for step in run.steps(f"glf {name}"):
        x = to_tensor(joint.train_x[ctx.shard(joint.batches.next_indices())].numpy(), device)
        z_batch.clear()
        loss, recon, nll = loss_of(x)
        # Averaged over ranks: the global batch's terms; every rank stops alike.
        row = {k: float(v) for k, v in ctx.means(loss=loss, recon=recon, nll=nll).items()}
        if not stop_gradient and not all(math.isfinite(v) for v in row.values()):
            # The regularized variant's divergence is what it demonstrates: stop, keep the
            # weights of the previous step (no update was made from this loss), say so.
            if not weights_finite(ae, flow):
                check_finite(step, **row)  # nothing sound to keep: fail as usual
            diverged_at = step
            run.log.add(step, **row)
            break
        check_finite(step, **row)
        joint.opt.zero_grad(set_to_none=True)
        loss.backward()
        joint.opt.step()
        row["latent_std"] = global_latent_std(z_batch[0], ctx)  # collapse shows here
        # Validation decides nothing here (the last weights are kept): rank 0 alone runs it.
        if step in run.eval_at and ctx.is_main:
            z_val = encode_all(ae, val_images, device)
            row["val_bits"] = bits_per_dim(mean_log_prob(flow, z_val), dim)
            row["val_latent_std"] = float(z_val.std(0).mean())
            row.update(reconstruction_metrics(ae, val_images, device))
            run.progress.set_postfix(
                val_bits=f"{row['val_bits']:.3f}", psnr=f"{row['val_psnr']:.2f}"
            )
        run.log_step(step, row)
    ctx.check_replicas(ae, flow)
    if not ctx.is_main:  # only rank 0 evaluates and writes artifacts
        return {"processes": ctx.world_size, "rank": ctx.rank}

    if diverged_at is not None:
        run.progress.close()
        logger.warning("glf %s: loss not finite at step %d; stopped there", name, diverged_at)
    trained_steps = spec["steps"] if diverged_at is None else diverged_at - 1
    # The last weights, not the best: the latents move, so earlier NLLs are not comparable.
    ae.eval()
    flow.eval()
    z_val = encode_all(ae, val_images, device)
    val_log_prob = mean_log_prob(flow, z_val)
    val_bits = bits_per_dim(val_log_prob, dim)
    out = paths.prior(name)
    save_joint(out["model"], joint, trained_steps)
    run.log.write(out["curve"])
    metrics = {
        "flow_val_nll_bits_per_dim": val_bits,
        "val_bits_per_token": val_bits,
        "val_bound": "flow_exact_nll_bits_per_latent_dim",
        **{f"glf_{k}": v for k, v in reconstruction_metrics(ae, val_images, device).items()},
        "glf_val_latent_std": float(z_val.std(0).mean()),
        # The flow's NLL of the validation latents in nats per vector: the quantity the
        # regularized variant drives towards −∞ by shrinking the latents.
        "glf_val_flow_nll_nats": -val_log_prob,
        "stop_gradient": spec["stop_gradient"],
        "latent_dim": dim,
        "trained_steps": trained_steps,
        **({} if diverged_at is None else {"diverged_at_step": diverged_at}),
        **run.tail(ae, flow),
    }
    write_json(out["metrics"], metrics)
    return metrics
