"""The continuous-latent family: flows, the Gaussian mixture, GLF's stop-gradient, the joint
VAE + flow bound, the params."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.mixture import GaussianMixture

from twostage.artifacts import load_torch, save_torch
from twostage.config import ConfigError, load_params
from twostage.models.autoencoders.continuous import ContinuousAutoencoder, vae_terms
from twostage.models.priors.continuous import StandardNormalPrior
from twostage.models.priors.flow import CouplingFlow
from twostage.models.priors.gmm import GaussianMixturePrior
from twostage.train.glf import glf_loss
from twostage.train.vae_flow import vae_flow_loss

SPEC = {"kind": "ae", "latent_dim": 4, "channels": [4, 8], "fc_dim": 16}


def _random_flow(dim: int = 5, blocks: int = 3) -> CouplingFlow:
    """A tiny flow whose blocks are not the identity (the last layers start at zero)."""
    torch.manual_seed(0)
    flow = CouplingFlow(dim, blocks, hidden=8, layers=2).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.5)
    return flow


def test_flow_logdet_equals_brute_force_jacobian():
    flow = _random_flow()
    for z in torch.randn(4, 5, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z)
        _, logdet = flow(z[None])
        assert torch.allclose(logdet[0], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)


def test_flow_inverse_undoes_forward_and_log_prob_is_a_density():
    flow = _random_flow()
    z = torch.randn(64, 5, dtype=torch.float64)
    assert torch.allclose(flow.inverse(flow(z)[0]), z, atol=1e-10)
    # A fresh flow (identity blocks) is exactly N(0, I).
    identity = CouplingFlow(5, 2, 8, 3).double()
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(identity.log_prob(z), expected)
    samples = flow.float().sample(10, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (10, 5) and torch.isfinite(samples).all()


def test_flow_log_prob_integrates_to_one_in_two_dimensions():
    flow = _random_flow(dim=2, blocks=2)
    axis = torch.linspace(-12, 12, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-3


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied", "spherical"])
def test_gmm_likelihood_matches_sklearn_and_samples_have_the_right_shape(covariance_type):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 1, (200, 3)), rng.normal(3, 0.5, (200, 3))])
    prior = GaussianMixturePrior.fit(z, 2, covariance_type, seed=0)
    reference = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(z)
    ours = prior.log_prob(torch.from_numpy(z).float()).numpy()
    assert ours.shape == (400,)
    np.testing.assert_allclose(ours, reference.score_samples(z), rtol=1e-4, atol=1e-4)
    draws = prior.sample(1000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (1000, 3)
    # Half the mass at each mode.
    assert abs(float((draws[:, 0] > 0).float().mean()) - 0.5) < 0.06


def test_gmm_checkpoint_loads_without_pickle(tmp_path: Path):
    z = np.random.default_rng(1).normal(size=(100, 2))
    prior = GaussianMixturePrior.fit(z, 3, "full", seed=0)
    save_torch(tmp_path / "gmm.pt", {"state_dict": prior.state_dict()})
    back = GaussianMixturePrior(2, 3)
    back.load_state_dict(load_torch(tmp_path / "gmm.pt")["state_dict"])  # weights_only
    probe = torch.randn(5, 2)
    assert torch.allclose(back.log_prob(probe), prior.log_prob(probe))


def test_standard_normal_prior_and_temperature():
    prior = StandardNormalPrior(3)
    z = prior.sample(20000, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(float(z.std()) - 0.5) < 0.01
    assert torch.allclose(
        prior.log_prob(torch.zeros(1, 3)), torch.tensor([-1.5 * math.log(2 * math.pi)])
    )


def _encoder_grad_from_nll(stop_gradient: bool) -> float:
    torch.manual_seed(0)
    ae = ContinuousAutoencoder(SPEC, 1, 16)
    flow = CouplingFlow(4, 2, 8, 2)
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    _, _, nll = glf_loss(ae, flow, x, beta=1.0, stop_gradient=stop_gradient)
    nll.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())
    return sum(float(p.grad.abs().sum()) for p in ae.encoder.parameters() if p.grad is not None)


def test_stop_gradient_keeps_the_flow_nll_out_of_the_encoder():
    assert _encoder_grad_from_nll(stop_gradient=True) == 0.0
    assert _encoder_grad_from_nll(stop_gradient=False) > 0.0  # "regularized GLF"


def test_vae_kl_vanishes_at_the_prior_and_autoencoder_shapes():
    torch.manual_seed(0)
    vae = ContinuousAutoencoder({**SPEC, "kind": "vae"}, 1, 16)
    with torch.no_grad():  # encoder output 0 → q(z|x) = N(0, I)
        last = vae.encoder[-1]
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    nll, kl = vae_terms(vae, x)
    assert float(kl) == 0.0 and float(nll) > 0
    assert vae.encode(x).shape == (3, 4) and vae.decode(torch.zeros(3, 4)).shape == (3, 1, 16, 16)
    assert vae.decode(torch.randn(3, 4)).abs().max() <= 1


def _tiny_vae_and_flow() -> tuple[ContinuousAutoencoder, CouplingFlow]:
    torch.manual_seed(0)
    vae = ContinuousAutoencoder({**SPEC, "kind": "vae"}, 1, 16).double()
    flow = _random_flow(dim=4, blocks=2)
    return vae, flow


def test_vae_flow_loss_equals_a_hand_computation():
    """−ELBO = −log p(x|z) + log q(z|x) − log p_flow(z) at the reparameterised draw, where
    log p_flow is computed here from the flow's brute-force Jacobian, not its log-scales."""
    vae, flow = _tiny_vae_and_flow()
    vae.eval()
    flow.eval()
    x = (torch.rand(3, 1, 16, 16, dtype=torch.float64) * 2 - 1).round(decimals=2)
    beta = 0.7
    loss, terms = vae_flow_loss(vae, flow, x, beta, torch.Generator().manual_seed(5))

    with torch.no_grad():
        h = vae.encoder(x)
        mu, logvar = h[:, :4], h[:, 4:]
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5)).double()
        z = mu + logvar.mul(0.5).exp() * eps
        p = torch.sigmoid(2 * vae.decoder(z))  # Bernoulli means = (tanh(a) + 1) / 2
        t = (x + 1) / 2
        log_px = (t * p.log() + (1 - t) * (1 - p).log()).flatten(1).sum(1)
        log_q = torch.distributions.Normal(mu, logvar.mul(0.5).exp()).log_prob(z).sum(1)
    log_p = []
    for row in z:
        u = flow(row[None])[0][0]
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], row)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum()
        log_p.append(float(base + torch.linalg.slogdet(jac)[1]))
    log_p = torch.tensor(log_p, dtype=torch.float64)
    assert torch.linalg.slogdet(jac)[1].abs() > 0.1  # the log-det matters in this check

    assert torch.allclose(terms["recon"], -log_px.mean(), rtol=1e-9)
    assert torch.allclose(terms["log_q"], log_q.mean(), rtol=1e-9)
    assert torch.allclose(terms["log_prior"], log_p.mean(), rtol=1e-9)
    expected = (-log_px + beta * (log_q - log_p)).mean()
    assert torch.allclose(loss, expected, rtol=1e-9)
    # Against the flow, the bound is not the N(0, I) one: the prior term really is the flow's.
    _, kl_normal = vae_terms(vae, x, torch.Generator().manual_seed(5))
    assert abs(float(terms["kl"] - kl_normal)) > 1e-3


def test_vae_flow_gradients_reach_encoder_decoder_and_flow():
    vae, flow = _tiny_vae_and_flow()
    x = torch.rand(8, 1, 16, 16, dtype=torch.float64) * 2 - 1
    loss, _ = vae_flow_loss(vae, flow, x, 1.0, torch.Generator().manual_seed(0))
    loss.backward()
    for part in (vae.encoder, vae.decoder, flow):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    # The flow's term alone also trains the encoder (it is the prior of q, not fitted after).
    vae.zero_grad()
    flow.zero_grad()
    _, terms = vae_flow_loss(vae, flow, x, 1.0, torch.Generator().manual_seed(0))
    (-terms["log_prior"]).backward()
    assert sum(float(p.grad.abs().sum()) for p in vae.encoder.parameters()) > 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in vae.decoder.parameters())


# --- params ---------------------------------------------------------------------------------


@pytest.fixture
def params_root(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def _edit(root: Path, file: str, mutate) -> None:
    path = root / "params" / file
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_repository_params_define_the_continuous_models(repo: Path):
    p = load_params(root=repo)
    assert {"glf", "rae_gmm"} <= set(p["targets"])
    sweeps = load_params(["params/profiles/sweeps.yaml"], root=repo)
    assert {"glf", "rae_gmm", "vae", "vae_flow"} <= set(sweeps["targets"])
    assert p.prior("glf_mnist")["stop_gradient"] is True
    assert p.prior(p.prior_of_run("vae_flow"))["kind"] == "vae_flow"  # the joint model


def test_continuous_runs_take_no_steps(params_root: Path):
    _edit(params_root, "evaluation.yaml", lambda d: d["runs"]["glf"].update(steps=4))
    with pytest.raises(ConfigError, match=r"evaluation\.yaml: runs\.glf\.steps: unknown key"):
        load_params(root=params_root)


def test_sampler_must_suit_a_continuous_prior(params_root: Path):
    _edit(
        params_root, "evaluation.yaml", lambda d: d["runs"]["vae"].update(sampler="random", steps=4)
    )
    with pytest.raises(
        ConfigError, match=r"runs\.vae\.sampler: .*vae_prior: use sampler: ancestral"
    ):
        load_params(root=params_root)


def test_prior_kind_must_suit_its_autoencoder(params_root: Path):
    _edit(
        params_root,
        "priors.yaml",
        lambda d: d["priors"]["vae_prior_mnist"].update(autoencoder="rae_mnist"),
    )
    with pytest.raises(ConfigError, match=r"priors\.vae_prior_mnist\.autoencoder: .*kind vae"):
        load_params(root=params_root)


def test_rae_needs_gamma(params_root: Path):
    _edit(params_root, "autoencoders.yaml", lambda d: d["autoencoders"]["rae_mnist"].pop("gamma"))
    with pytest.raises(ConfigError, match=r"autoencoders\.rae_mnist: 'gamma' is a required"):
        load_params(root=params_root)
