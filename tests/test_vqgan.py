"""Stage 1 at full fidelity: adaptive GAN weight, discriminator schedule, DiffAug,
quantizers, resume with the discriminator on, perceptual weights, the paper config."""

from __future__ import annotations

import copy
import urllib.request

import pytest
import torch
from torch import nn

from twostage.config import ConfigError, load_params, with_defaults
from twostage.models.autoencoders.diffaug import POLICIES, diff_augment
from twostage.models.autoencoders.discriminator import PatchDiscriminator, adaptive_weight
from twostage.models.autoencoders.perceptual import load_perceptual
from twostage.models.autoencoders.quantizers import (
    GumbelQuantizer,
    VectorQuantizer,
    gumbel_temperature,
)
from twostage.models.autoencoders.vq import VQAutoencoder
from twostage.train.resume import ResumableState
from twostage.train.vq_step import VQTrainer

TINY = dict(
    kind="vq",
    nf=8,
    ch_mult=[1, 2],
    res_blocks=0,
    attn_resolutions=[],
    codebook_size=16,
    emb_dim=4,
    beta=0.25,
    lr=2e-3,
    batch_size=4,
    steps=20,
    eval_every=10,
)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny nets: a second thread only adds synchronisation, which a busy machine makes costly.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(seed: int = 0, n: int = 4, side: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g) * 2 - 1


def _blocks(seed: int = 0, n: int = 4) -> torch.Tensor:
    """Images constant on each token's 2×2 patch, two grey levels: a codebook can fit them."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 2, (n, 1, 8, 8), generator=g).float() * 1.6 - 0.8
    return levels.repeat_interleave(2, 2).repeat_interleave(2, 3)


def _trainer(**options) -> VQTrainer:
    torch.manual_seed(0)
    spec = with_defaults("autoencoders", {**TINY, **options})
    model = VQAutoencoder(spec, channels=1, resolution=16)
    return VQTrainer(model, spec, channels=1, device=CPU)


def test_adaptive_weight_matches_the_formula_and_its_clamp():
    torch.manual_seed(0)
    last = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    out = last(x)
    rec, g = out.pow(2).mean(), (out * torch.randn(5, 2)).sum() * 0.01
    rec_grad = torch.autograd.grad(rec, last.weight, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g, last.weight, retain_graph=True)[0]
    expected = rec_grad.norm() / (g_grad.norm() + 1e-4)
    assert expected > 1  # so the clamp below bites
    weight = adaptive_weight(rec, g, last.weight, max_weight=100.0)
    assert torch.allclose(weight, expected) and not weight.requires_grad
    assert float(adaptive_weight(rec, g, last.weight, max_weight=1.0)) == 1.0


def test_discriminator_is_not_updated_before_disc_start_step():
    trainer = _trainer(adversarial=True, disc_start_step=4, disc_ndf=8, disc_layers=2)
    before = copy.deepcopy(trainer.disc.state_dict())
    for step in (1, 2, 3):
        row = trainer.step(_batch(step), step)
        assert "d_loss" not in row and "g_loss" not in row
    after = trainer.disc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats included
    row = trainer.step(_batch(4), 4)
    assert {"d_loss", "g_loss", "disc_weight"} <= row.keys()
    assert 0 <= row["disc_weight"] <= 1.0
    assert any(not torch.equal(before[k], trainer.disc.state_dict()[k]) for k in before)


def test_diffaug_keeps_gradients_and_shapes():
    torch.manual_seed(0)
    x = _batch(n=3).repeat(1, 3, 1, 1).requires_grad_(True)
    out = diff_augment(x, POLICIES)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, []), x)


def test_translation_moves_pixels_without_changing_values():
    torch.manual_seed(3)
    x = torch.arange(64.0).view(1, 1, 8, 8) + 1  # no zeros: padding shows up as 0
    out = diff_augment(x, ["translation"])
    kept = out[out != 0]
    assert set(kept.tolist()) <= set(x.flatten().tolist())


@pytest.mark.parametrize("quantizer", ["nearest", "gumbel"])
def test_both_quantizers_train(quantizer: str):
    # Gumbel: a slow anneal; at 1/16 within 40 steps its gradients are too noisy to learn.
    trainer = _trainer(quantizer=quantizer, lr=5e-3, gumbel={"anneal_steps": 200})
    x = _blocks()
    first = trainer.step(x, 1)["l1"]
    for step in range(2, 41):
        row = trainer.step(x, step)
    assert row["l1"] < 0.5 * first
    trainer.model.eval()
    with torch.no_grad():
        recon, _, idx = trainer.model(x)  # evaluation takes the chosen (arg-max) code
    assert float((recon - x).abs().mean()) < 0.5 * first
    assert torch.equal(idx, trainer.model.encode(x))
    if quantizer == "gumbel":
        assert row["temperature"] < 1.0


def test_gumbel_temperature_anneals_from_start_to_end():
    assert gumbel_temperature(0, 1.0, 1 / 16, 100) == 1.0
    assert gumbel_temperature(50, 1.0, 1 / 16, 100) == pytest.approx(0.25)
    assert gumbel_temperature(500, 1.0, 1 / 16, 100) == pytest.approx(1 / 16)


def test_gumbel_kl_vanishes_for_uniform_logits():
    q = GumbelQuantizer(codebook_size=8, emb_dim=4, kl_weight=1.0)
    nn.init.zeros_(q.proj.weight), nn.init.zeros_(q.proj.bias)
    _, kl, _ = q(torch.randn(2, 4, 3, 3))
    assert abs(float(kl.detach())) < 1e-6


def test_dead_codes_move_onto_encodings():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=8, emb_dim=2, beta=0.25, reinit_every=2)
    vq.embedding.weight.data = torch.tensor([[0.0, 0.0]] + [[100.0, 100.0]] * 7)
    z = torch.randn(2, 2, 3, 3) * 0.1
    vq(z)  # every encoding picks code 0: codes 1..7 are dead
    vq(z)  # the second call revives them onto encodings of z
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for code in vq.embedding.weight[1:]:
        assert (flat - code).abs().sum(1).min() < 1e-6


def test_resume_with_discriminator_and_ema_is_bit_identical(tmp_path):
    options = dict(
        adversarial=True, disc_start_step=2, disc_ndf=8, disc_layers=2,
        diffaug=list(POLICIES), ema_decay=0.9, warmup_steps=3, grad_clip=1.0,
        dead_code_reinit_every=2,
    )  # fmt: skip

    def state(trainer: VQTrainer) -> ResumableState:
        resume = ResumableState("t", "x", "fp", every=3, parts=trainer.state_parts())
        resume.path = tmp_path / "state.pt"
        return resume

    clean = _trainer(**options)
    for step in range(1, 7):
        clean.step(_batch(step), step)

    killed = _trainer(**options)
    saver = state(killed)
    for step in range(1, 4):
        killed.step(_batch(step), step)
        saver.save_if_due(step, 6)
    torch.manual_seed(123)  # the "new process" starts from another RNG state
    resumed = _trainer(**options)
    first = state(resumed).restore()
    assert first == 4
    for step in range(first, 7):
        resumed.step(_batch(step), step)
    for name, part in clean.state_parts().items():
        a, b = part.state_dict(), resumed.state_parts()[name].state_dict()
        if name in ("model", "discriminator", "ema"):
            assert all(torch.equal(a[k], b[k]) for k in a), name


class _SquaredError(nn.Module):
    """A stand-in perceptual distance (per image), so the loss sum has a known answer."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).pow(2).flatten(1).mean(1)


def test_perceptual_term_enters_the_reconstruction_loss():
    torch.manual_seed(0)
    spec = with_defaults("autoencoders", {**TINY, "perceptual_weight": 0.5})
    model = VQAutoencoder(spec, channels=1, resolution=16)
    trainer = VQTrainer(model, spec, 1, CPU, perceptual=_SquaredError())
    row = trainer.step(_batch(), 1)
    expected = row["l1"] + 0.5 * row["perceptual"] + row["codebook"]
    assert row["loss"] == pytest.approx(expected, rel=1e-6)
    assert "perceptual" in trainer.log_columns()


def test_missing_perceptual_weights_name_the_file_and_never_download(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    spec = {
        "perceptual_weight": 1.0,
        "perceptual_weights": "resources/weights/nope.pth",
        "allow_download": False,
    }
    with pytest.raises(ConfigError, match=r"autoencoders\.ae\.perceptual_weights: file "
                       r"'resources/weights/nope\.pth' not found"):  # fmt: skip
        load_perceptual(spec, "ae")
    with pytest.raises(ConfigError, match=r"perceptual_weights: not set.*allow_download"):
        load_perceptual({"perceptual_weight": 1.0, "allow_download": False}, "ae")


def test_paper_config_has_a_16x16_grid_and_the_reference_size(repo):
    p = load_params(root=repo)
    spec = p.autoencoder("vqgan_ffhq256")
    ds = p.dataset(spec["dataset"])
    assert "vqgan_ffhq256" not in p.target_autoencoders()
    with torch.device("meta"):  # shapes and parameter counts without allocating 71 M floats
        model = VQAutoencoder(spec, ds["channels"], ds["resolution"])
        z = model.encoder(torch.empty(1, ds["channels"], ds["resolution"], ds["resolution"]))
        disc = PatchDiscriminator(ds["channels"], spec["disc_ndf"], spec["disc_layers"])
    assert model.token_side == 16 and z.shape == (1, 256, 16, 16)
    n = sum(t.numel() for t in model.parameters())
    assert 65e6 < n < 80e6  # taming's f16 VQ-GAN with K = 1024: ~71 M
    assert 2.5e6 < sum(t.numel() for t in disc.parameters()) < 3e6  # its PatchGAN: 2.77 M


@pytest.mark.slow
def test_perceptual_backbone_loads_from_the_local_file(tmp_path, monkeypatch):
    from torchvision.models.vgg import cfgs, make_layers

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # VGG16's conv part; random values stand in offline
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    perceptual = load_perceptual({"perceptual_weight": 1.0, "perceptual_weights": str(path)}, "x")
    net = perceptual.lpips.net
    assert torch.equal(getattr(net.slice1, "0").weight, features[0].weight)
    assert torch.equal(
        getattr(net.slice5, "28").weight, features[28].weight
    )  # conv5_3, the last one
    x = _batch(n=2, side=32).requires_grad_(True)
    assert float(perceptual(x.detach(), x.detach()).abs().max()) < 1e-6
    perceptual(x, torch.zeros_like(x)).sum().backward()  # grey input, repeated to RGB
    assert x.grad is not None and x.grad.abs().sum() > 0
