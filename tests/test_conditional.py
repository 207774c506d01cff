"""Class-conditional token priors and classifier-free guidance (models/priors/guidance.py)."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from twostage.config import ConfigError, load_params
from twostage.models.priors import build_prior
from twostage.models.priors.guidance import Guidance, combine, drop_labels, guided_logits
from twostage.sample.network_evaluations import counting_evaluations, token_prior_network

SPEC = {
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "dropout": 0.0,
    "loss_type": "reweighted_elbo",
    "mask_schedule": "random",
}
KINDS = ("absorbing", "autoregressive")

# An unconditional prior (K = 8 codes, L = 9 tokens, torch.manual_seed(0)) as the code
# before conditioning existed built, trained (3 AdamW steps) and sampled it: its
# parameters' hash, its first training losses and its sampled tokens.
BEFORE = {
    "absorbing": (
        "13372d2a2ff7b9b9b3e3b91aa241298a90a2753ae86b02a61477b3a2f4d958ae",
        [0.7123892903327942, 0.7249035835266113, 0.7591081857681274],
        [
            [3, 0, 2, 4, 4, 3, 4, 0, 7],
            [7, 3, 1, 4, 0, 5, 1, 4, 4],
            [7, 1, 3, 6, 3, 2, 1, 7, 4],
            [6, 7, 0, 0, 5, 5, 5, 4, 0],
        ],
    ),
    "autoregressive": (
        "13372d2a2ff7b9b9b3e3b91aa241298a90a2753ae86b02a61477b3a2f4d958ae",
        [3.0116801261901855, 2.928436756134033, 2.9424362182617188],
        [
            [0, 0, 2, 5, 5, 3, 7, 0, 5],
            [7, 5, 6, 5, 1, 0, 4, 5, 5],
            [6, 1, 5, 4, 1, 5, 3, 6, 5],
            [7, 6, 5, 1, 5, 7, 1, 2, 4],
        ],
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_an_unconditional_prior_is_what_it_was(kind):
    torch.manual_seed(0)
    model = build_prior({**SPEC, "kind": kind}, 8, 9)
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.numpy().tobytes())
    data = torch.randint(0, 8, (32, 9), generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss, _ = model.loss(data, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    tokens = model.sample(4, 9, 1.0, generator=torch.Generator().manual_seed(3))
    params_hash, before_losses, before_tokens = BEFORE[kind]
    assert digest.hexdigest() == params_hash  # same parameters, order and initial values
    # Same random draws and arithmetic; the tolerance only allows another BLAS's summation
    # order (float32: a few ulps of a value near 1).
    assert losses == pytest.approx(before_losses, rel=1e-6)
    assert tokens.tolist() == before_tokens


def test_guidance_combination_by_hand():
    cond = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    uncond = torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    # w = 0.5: 1.5·[1, 2] − 0.5·[3, 0] = [0, 3]; w = 0: the conditional logits.
    out = combine(cond, uncond, torch.tensor([0.5, 0.0]))
    assert out.tolist() == [[0.0, 3.0], [1.0, 2.0]]


def test_guidance_schedules_by_hand():
    decoded = torch.tensor([0.0, 0.25, 1.0])
    assert Guidance(2.0).weight(decoded).tolist() == [2.0, 2.0, 2.0]
    assert Guidance(2.0, "linear").weight(decoded).tolist() == [0.0, 0.5, 2.0]
    with pytest.raises(ValueError, match="schedule"):
        Guidance(1.0, "cosine")


def test_label_dropout_at_its_rate():
    n, rate, null = 20_000, 0.1, 10
    classes = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(classes, rate, null, torch.Generator().manual_seed(1))
    is_null = dropped == null
    # Binomial(n, rate): std √(n·rate·(1 − rate)) ≈ 42; 4 std is a 6e-5 false alarm.
    assert abs(int(is_null.sum()) - n * rate) < 4 * math.sqrt(n * rate * (1 - rate))
    assert torch.equal(dropped[~is_null], classes[~is_null])  # the rest keep their class
    assert torch.equal(drop_labels(classes, 0.0, null, None), classes)


def _conditional(kind, classes=3, seed=0):
    torch.manual_seed(seed)
    spec = {**SPEC, "kind": kind, "condition": "class", "label_drop": 0.1}
    return build_prior(spec, 8, 9, num_classes=classes).eval()


def test_w0_is_the_conditional_model_and_w_combines_the_two_streams():
    model = _conditional("absorbing")
    z = torch.randint(0, 9, (5, 9), generator=torch.Generator().manual_seed(4))
    classes = torch.tensor([0, 1, 2, 0, 1])
    null = torch.full_like(classes, 3)
    with torch.no_grad():
        cond = model.denoiser(z, classes=classes)
        uncond = model.denoiser(z, classes=null)
        assert torch.equal(model.logits(z, classes, Guidance(0.0)), cond)
        guided = model.logits(z, classes, Guidance(1.5))
    assert torch.allclose(guided, 2.5 * cond - 1.5 * uncond, atol=1e-5)  # float32 rounding
    # Without classes a conditional prior is its unconditional half.
    with torch.no_grad():
        assert torch.equal(model.logits(z), uncond)


def test_a_class_token_stream_and_a_no_class_stream_are_different():
    model = _conditional("autoregressive")
    z = torch.zeros(2, 1, dtype=torch.long)
    with torch.no_grad():
        a = model.denoiser(z, classes=torch.tensor([0, 0]))
        b = model.denoiser(z, classes=torch.tensor([1, 1]))
    assert not torch.allclose(a, b)  # the class reaches the logits
    with pytest.raises(ValueError, match="without classes"):
        model.denoiser(z)


@pytest.mark.parametrize(("kind", "steps"), [("absorbing", 9), ("autoregressive", 9)])
def test_guided_sampling_measures_its_doubled_calls(kind, steps):
    model = _conditional(kind)
    classes = torch.tensor([0, 1, 2, 0])

    def draw(guidance):
        gen = torch.Generator().manual_seed(5)
        with counting_evaluations(token_prior_network(model)) as counted:
            out = model.sample(4, steps, 1.0, generator=gen, classes=classes, guidance=guidance)
        return out, counted.per_sample(4)

    plain, plain_rows = draw(None)
    zero, zero_rows = draw(Guidance(0.0))
    guided, guided_rows = draw(Guidance(3.0))
    assert torch.equal(plain, zero) and plain_rows == zero_rows  # w = 0: the conditional model
    assert guided_rows == 2 * plain_rows  # both streams of every call, as one doubled batch
    _, linear_rows = draw(Guidance(3.0, "linear"))
    if kind == "autoregressive":
        assert plain_rows == 9  # one row per token per sample
        assert linear_rows == guided_rows  # the cache needs the unconditional stream throughout
    else:
        # The first call sees nothing decoded (w_t = 0): its unconditional half is skipped.
        assert plain_rows < linear_rows < guided_rows


def test_guidance_needs_the_unconditional_stream_of_the_same_call():
    model = _conditional("autoregressive")
    tokens = torch.zeros(2, 1, dtype=torch.long)
    classes = torch.tensor([0, 2])
    weight = torch.tensor([1.0, 1.0])
    with torch.no_grad():
        out = guided_logits(model.denoiser, tokens, classes, weight, both=True)
        cond = model.denoiser(tokens, classes=classes)
        uncond = model.denoiser(tokens, classes=torch.tensor([3, 3]))
    assert torch.allclose(out, 2 * cond - uncond, atol=1e-5)


def _toy_tokens(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 uses codes {0, 1}, class 1 codes {2, 3}, each token uniform in its pair."""
    classes = torch.randint(0, 2, (n,), generator=generator)
    tokens = 2 * classes[:, None] + torch.randint(0, 2, (n, 4), generator=generator)
    return tokens, classes


@pytest.mark.parametrize("kind", KINDS)
def test_a_conditional_prior_draws_the_tokens_of_the_class_asked_for(kind):
    torch.manual_seed(0)
    spec = {**SPEC, "kind": kind, "n_layer": 1, "label_drop": 0.1}
    model = build_prior(spec, 4, 4, num_classes=2)
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        tokens, classes = _toy_tokens(64, gen)
        loss, _ = model.loss(tokens, generator=gen, classes=classes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    asked = torch.tensor([0, 1] * 32)
    drawn = model.sample(64, 4, 1.0, generator=gen, classes=asked, guidance=Guidance(1.0))
    in_class = (drawn // 2) == asked[:, None]
    # Unconditionally half the tokens would be of the other class's codes; a prior that
    # reads the class puts (nearly) all in the class asked for.
    assert in_class.float().mean() > 0.95


@pytest.fixture
def params_root(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def _edit(root: Path, file: str, mutate) -> None:
    path = root / "params" / file
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_a_guidance_sweep_names_one_run_per_scale(params_root: Path):
    _edit(
        params_root,
        "priors.yaml",
        lambda d: d["priors"]["absorbing_mnist"].update(condition="class"),
    )

    def sweep(d):
        d["sweeps"]["guided"] = {
            "prior": "absorbing_mnist",
            "sampler": "confidence",
            "steps": [4],
            "temperature": [0.8],
            "guidance": [0, 0.5],
            "batch_size": 100,
        }
        d["targets"] = ["guided"]

    _edit(params_root, "evaluation.yaml", sweep)
    p = load_params(root=params_root)
    assert p["targets"] == ["guided-s4-t0p8-g0", "guided-s4-t0p8-g0p5"]
    assert p.run("guided-s4-t0p8-g0p5")["guidance"] == 0.5


def test_guidance_on_an_unconditional_prior_is_refused(params_root: Path):
    _edit(
        params_root,
        "evaluation.yaml",
        lambda d: d["runs"]["absorbing_confidence"].update(guidance=1.0),
    )
    with pytest.raises(ConfigError, match=r"runs\.absorbing_confidence\.guidance: applies to"):
        load_params(root=params_root)


def test_class_scores_by_hand():
    from twostage.evaluate.conditional import class_scores

    rng = np.random.default_rng(0)
    real = rng.normal(size=(100, 2))
    labels = np.repeat([0, 1], 50)
    # Class 0's samples are its real images; class 1's are its real images moved by (30, 40):
    # same covariance, so FD = |shift|² = 2500.
    fake = np.concatenate([real[:50], real[50:] + [30.0, 40.0]])
    asked = labels.copy()
    predicted = labels.copy()
    predicted[:25] = 1  # a quarter put in the wrong class
    scores = class_scores(fake, asked, predicted, real, labels, "classifier", 3, 0)
    assert scores["class_accuracy"] == 0.75
    per_class = scores["per_class"]["fd_classifier"]
    assert per_class["0"] == pytest.approx(0.0, abs=1e-6)  # sqrtm's float64 rounding
    assert per_class["1"] == pytest.approx(2500.0, abs=1e-6)
    assert scores["fd_classifier_class_mean"] == pytest.approx(1250.0, abs=1e-6)
    assert scores["fd_classifier_class_worst"] == pytest.approx(2500.0, abs=1e-6)
    # PRDC per class: class 0's samples are its real images (every sample inside a real
    # ball and every real image inside a sample's ball); class 1's sit 50 away, far outside
    # the 3-NN balls of 50 unit-variance points, so nothing of either side is reached.
    for m in ("precision", "recall", "coverage"):
        assert scores["per_class"][m] == {"0": 1.0, "1": 0.0}
        assert scores[f"{m}_class_mean"] == 0.5 and scores[f"{m}_class_worst"] == 0.0
    assert scores["per_class"]["density"]["1"] == 0.0
    assert scores["density_class_worst"] == 0.0  # the class farthest from 1
    with pytest.raises(ValueError, match="class 1: 3 samples"):
        class_scores(fake[:53], asked[:53], predicted[:53], real, labels, "classifier", 3, 0)


def test_classes_drawn_in_turn_and_a_gallery_row_per_class():
    from twostage.sample.sampler import class_rows, requested_classes

    spec = {"prior": "p"}
    assert requested_classes(spec, 7, 3, "r").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert requested_classes({**spec, "classes": [2, 5]}, 5, 6, "r").tolist() == [2, 5, 2, 5, 2]
    with pytest.raises(ConfigError, match=r"runs\.r\.classes: \[7\] are not classes"):
        requested_classes({**spec, "classes": [7]}, 5, 6, "r")
    images = np.arange(30).reshape(30, 1, 1, 1)
    classes = requested_classes(spec, 30, 3, "r")
    rows = class_rows(images, classes, per_row=2).ravel().tolist()
    assert rows == [0, 3, 1, 4, 2, 5]  # class 0's first two images, then class 1's, 2's


def test_the_report_plots_fd_and_accuracy_against_guidance(tmp_path: Path):
    import pandas as pd

    from twostage.report.figures import plot_guidance

    table = pd.DataFrame(
        {
            "run": [f"g-g{w}" for w in (0, 1, 2)] + ["other"],
            "prior": ["cond"] * 3 + ["uncond"],
            "sampler": ["confidence"] * 3 + ["random"],
            "steps": [8] * 4,
            "temperature": [0.8] * 4,
            "guidance": [0.0, 1.0, 2.0, None],
            "fd_classifier": [30.0, 25.0, 28.0, 40.0],
            "class_accuracy": [0.8, 0.9, 0.95, None],
            "n_samples": [1000] * 4,
        }
    )
    figures = plot_guidance(table, "fd_classifier", tmp_path)
    assert [f.src for f in figures] == ["figures/guidance.png"]
    assert (tmp_path / "guidance.png").stat().st_size > 0
    # No guidance sweep (one w per prior and setting): no figure.
    assert plot_guidance(table.iloc[[0, 3]], "fd_classifier", tmp_path) == []


def test_an_image_folder_gives_the_tokens_their_class_sub_folder(tmp_path: Path, monkeypatch):
    from PIL import Image

    from twostage import paths
    from twostage.artifacts import save_npz
    from twostage.data.latents import load_labels
    from twostage.data.sources import DataError, load_source

    folder = tmp_path / "faces"
    for cls, count in (("cats", 2), ("dogs", 3)):
        (folder / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), 40 * i).save(folder / cls / f"{i}.png")
    images, labels = load_source(
        {"source": "folder", "path": str(folder), "resolution": 8, "channels": 1}
    )
    monkeypatch.chdir(tmp_path)
    save_npz(paths.data("faces")["train"], images=images, labels=labels)

    class Stub:  # only what load_labels asks of the params
        def dataset_of_autoencoder(self, ae):
            return "faces"

    assert load_labels(Stub(), "vq_faces", "train", 5).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="6 token grids"):
        load_labels(Stub(), "vq_faces", "train", 6)
    # An image outside any class sub-folder has no class: a conditional prior says so.
    save_npz(paths.data("faces")["train"], images=images, labels=np.r_[labels[:4], -1])
    with pytest.raises(DataError, match="have no class .* condition: none"):
        load_labels(Stub(), "vq_faces", "train", 5)


def test_a_gaussian_mixture_per_class_draws_from_the_class_asked_for():
    from twostage.models.priors.gmm import ClassGaussianMixtures, build_gmm

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [30, 10])
    centres = np.where(labels[:, None] == 0, [-5.0, 0.0], [5.0, 0.0])
    latents = centres + rng.normal(scale=0.5, size=(40, 2))
    prior = ClassGaussianMixtures.fit(latents, labels, components=1, seed=0)
    assert prior.class_weights.tolist() == [0.75, 0.25]  # the classes' training frequencies
    asked = torch.tensor([0, 1] * 50)
    z = prior.sample(100, generator=torch.Generator().manual_seed(0), classes=asked)
    # Classes 10 standard deviations apart: every draw on its class's side.
    assert torch.equal((z[:, 0] > 0).long(), asked)
    # log p(z) = log Σ_c π_c p(z | c)
    point = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    by_hand = torch.logsumexp(
        torch.stack([m.log_prob(point) for m in prior.mixtures], 1).double()
        + prior.class_weights.double().log(),
        1,
    )
    assert torch.allclose(prior.log_prob(point).double(), by_hand)
    spec = {"kind": "gmm", "components": 1}
    assert isinstance(build_gmm(spec, 2, num_classes=2), ClassGaussianMixtures)
    assert not isinstance(build_gmm(spec, 2), ClassGaussianMixtures)
