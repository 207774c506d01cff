"""Evaluation: extractor registry, torch-fidelity cross-check, protocol, real-feature cache."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_in_fresh_interpreter

from twostage import paths
from twostage.artifacts import file_sha256, save_npz, save_torch, sha256_array, write_json
from twostage.config import ConfigError, Params, load_params
from twostage.evaluate import extractors, protocol
from twostage.evaluate.extractors import Extractor
from twostage.evaluate.extractors.random_weights import random_inception_state_dict
from twostage.evaluate.features import extract_real_features
from twostage.evaluate.kid import kid_mean_std
from twostage.evaluate.protocol import fid_torch_fidelity, kid_and_is, score
from twostage.evaluate.stages import evaluate_run
from twostage.models.classifier import Classifier

CPU = torch.device("cpu")


def _images(n: int, seed: int, shift: int = 0) -> np.ndarray:
    """Blurry random 32×32 grayscale blobs (uint8 N×H×W×1), optionally brightened."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8, 8)).repeat(4, axis=1).repeat(4, axis=2)
    img = np.clip(128 + 50 * base + shift, 0, 255).astype(np.uint8)
    return img[..., None]


def _params(repo, **evaluation) -> Params:
    p = load_params(root=repo)
    data = copy.deepcopy(p.data)
    data["evaluation"].update(evaluation)
    return Params(data=data, files=p.files, origin=p.origin, sweep_of=p.sweep_of)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A torch-fidelity Inception weights file with random values of the right shapes."""
    path = tmp_path_factory.mktemp("weights") / "inception.pth"
    torch.save(random_inception_state_dict(seed=0), path)
    return path


@pytest.mark.slow
def test_fid_and_is_equal_torch_fidelity_calculate_metrics(repo, inception_weights):
    """Our Inception extractor and torch-fidelity's own pipeline, from the same images.

    20 fakes give the Inception Score ten splits of two images, so its std is > 0 and a
    wrong logits layer or split would show. KID on so few images would use one subset of
    all of them (std 0 on both sides); it is compared on features above.
    """
    import torch_fidelity

    p = _params(repo, weights={"inception": str(inception_weights)})
    ext = extractors.build(p, "inception", "mnist5k", CPU)
    assert ext.weights_sha256 == file_sha256(inception_weights)
    real, fake = _images(5, 0), _images(20, 1, shift=30)
    emb_fake, emb_real = ext.embed(fake), ext.embed(real)
    ours = {"fid": fid_torch_fidelity(emb_fake.features, emb_real.features)}
    values, used = kid_and_is(
        emb_fake.features, emb_real.features, "inception", 2020, emb_fake.logits
    )
    ours.update(values)
    assert used["inception_score_splits"] == 10

    class Images(torch.utils.data.Dataset):
        def __init__(self, arr):
            self.x = torch.from_numpy(arr).permute(0, 3, 1, 2).repeat(1, 3, 1, 1)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(fake),
        input2=Images(real),
        fid=True,
        isc=True,
        isc_splits=used["inception_score_splits"],
        feature_extractor_weights_path=str(inception_weights),
        cuda=False,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=False,
    )
    assert ours["fid"] > 0 and ours["inception_score_std"] > 0
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-5)
    # Random Inception weights give nearly flat softmaxes (IS ~ 1.001): compare IS − 1.
    excess = ours["inception_score_mean"] - 1, theirs["inception_score_mean"] - 1
    assert excess[0] > 0 and excess[0] == pytest.approx(excess[1], rel=1e-4)
    assert ours["inception_score_std"] == pytest.approx(theirs["inception_score_std"], rel=1e-4)


def test_kid_and_is_protocol_is_torch_fidelitys_default():
    from torch_fidelity.defaults import DEFAULTS

    ours = {
        "kid_subsets": protocol.KID_SUBSETS,
        "kid_subset_size": protocol.KID_SUBSET_SIZE,
        "isc_splits": protocol.IS_SPLITS,
    }
    assert ours == {key: DEFAULTS[key] for key in ours}


def test_kid_and_is_equal_torch_fidelity_where_subsets_and_splits_differ(monkeypatch):
    """Our KID and IS against torch-fidelity's functions called directly.

    With enough samples the comparison can fail: 2000 fakes give the Inception Score ten
    splits of 200 (not one image each, whose IS is exactly 1), and KID subsets of 1000 out
    of 2000 and 2500 are different subsets (not all the whole set), so both stds are > 0.
    Features are float32 values, as an extractor's network outputs them. 10 KID subsets
    instead of 100 keep it fast (each is three 1000 × 1000 kernels); the count is passed
    through like the others, and the default is checked above.
    """
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    monkeypatch.setattr(protocol, "KID_SUBSETS", 10)
    rng = np.random.default_rng(0)
    real = rng.standard_normal((2500, 32)).astype(np.float32).astype(np.float64)
    fake = (1.1 * rng.standard_normal((2000, 32)) + 0.1).astype(np.float32).astype(np.float64)
    logits = (4 * rng.standard_normal((2000, 100))).astype(np.float32).astype(np.float64)
    seed = 7
    ours, used = kid_and_is(fake, real, "inception", seed, logits)
    assert used == {"kid_subsets": 10, "kid_subset_size": 1000, "inception_score_splits": 10}
    kid = kid_features_to_metric(
        torch.from_numpy(fake).float(),
        torch.from_numpy(real).float(),
        kid_subsets=10,
        kid_subset_size=1000,
        rng_seed=seed,
        verbose=False,
    )
    isc = isc_features_to_metric(torch.from_numpy(logits), splits=10, rng_seed=seed)
    assert ours["kid_std"] > 0 and ours["inception_score_std"] > 0
    assert ours["kid_mean"] > 0 and ours["inception_score_mean"] > 2
    assert ours["kid_mean"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-12)
    assert ours["kid_std"] == pytest.approx(kid["kernel_inception_distance_std"], rel=1e-12)
    assert ours["inception_score_mean"] == pytest.approx(isc["inception_score_mean"], rel=1e-12)
    assert ours["inception_score_std"] == pytest.approx(isc["inception_score_std"], rel=1e-12)


def test_kid_equals_torch_fidelitys_estimator_on_its_own_draws():
    """Our KID (evaluate/kid.py) is torch-fidelity's, subset draws and float32 arithmetic
    included: subsets of 200 out of 300 and 400 differ, so a wrong draw or kernel shows.
    ReLU features (like the classifier's) make large kernel values whose float32 sums
    cancel: computing them any other way (in float64, or gathering the blocks from whole
    kernel matrices under OpenBLAS's AVX2 kernels) moves KID here by ~1e-7 relative."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(3)
    fake = np.maximum(2 * rng.standard_normal((300, 16)) + 1, 0)
    real = np.maximum(2.4 * rng.standard_normal((400, 16)) + 1.6, 0)
    ours = kid_mean_std(fake, real, subsets=20, subset_size=200, seed=11)
    theirs = kid_features_to_metric(
        torch.from_numpy(fake.astype(np.float32)),
        torch.from_numpy(real.astype(np.float32)),
        kid_subsets=20,
        kid_subset_size=200,
        rng_seed=11,
        verbose=False,
    )
    assert ours[0] > 0 and ours[1] > 0
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-12)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-12)


def test_kid_of_a_hand_checked_case():
    """x = two points at 0, y = two at (1, 1): k(x, x) = 1, k(x, y) = 1 and, with gamma =
    1/D, k(y, y) = (2/2 + 1)³ = 8; the unbiased MMD² drops the diagonals: 1 + 8 − 2 = 7,
    whichever subsets (each is all of both sets) are drawn."""
    x, y = np.zeros((2, 2)), np.ones((2, 2))
    assert kid_mean_std(x, y, subsets=3, subset_size=2, seed=0) == (7.0, 0.0)
    with pytest.raises(ValueError, match="subset size 3"):
        kid_mean_std(x, y, subsets=3, subset_size=3, seed=0)


def test_kid_on_the_default_extractor_does_not_import_torch_fidelity():
    # torch-fidelity's package imports torchvision and torch._dynamo, a cost every evaluate
    # job would pay; with the classifier extractor nothing needs it. A fresh interpreter shows it.
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from twostage.evaluate.protocol import kid_and_is, score\n"
        "rng = np.random.default_rng(0)\n"
        "fake, real = rng.standard_normal((60, 8)), rng.standard_normal((80, 8))\n"
        "values, _ = kid_and_is(fake, real, 'classifier', 0)\n"
        "assert set(values) == {'kid_classifier_mean', 'kid_classifier_std'}, values\n"
        "score(fake, real, 'classifier', 3, 0)\n"
        "assert not {'torch_fidelity', 'torchvision'} & set(sys.modules), 'imported'\n"
    )
    run_in_fresh_interpreter(code)


def test_identical_sets_give_zero_fd_and_perfect_prdc():
    feats = np.random.default_rng(0).normal(size=(200, 16))
    out = score(feats, feats, "classifier", nearest_k=3, seed=0)
    assert out["fd_classifier"] == pytest.approx(0, abs=1e-8)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert out["protocol"]["nearest_k"] == 3 and out["protocol"]["n_fake"] == 200
    assert fid_torch_fidelity(feats, feats) == pytest.approx(0, abs=1e-6)


def test_shifting_one_set_increases_fd(repo):
    ext = extractors.build(_params(repo), "random-classifier-0", "mnist5k", CPU)
    a, b = _images(300, 0), _images(300, 1)
    base = ext(a)
    fd_same_distribution = score(ext(b), base, ext.name, 3, 0)["fd_random-classifier-0"]
    fd_shifted = score(ext(_images(300, 1, shift=40)), base, ext.name, 3, 0)
    assert fd_shifted["fd_random-classifier-0"] > 5 * fd_same_distribution
    assert fd_shifted["protocol"]["extractor"] == "random-classifier-0"


def test_random_extractor_is_reproducible(repo):
    p, imgs = _params(repo), _images(8, 0)
    one = extractors.build(p, "random-classifier-7", "mnist5k", CPU)
    two = extractors.build(p, "random-classifier-7", "mnist5k", CPU)
    other = extractors.build(p, "random-classifier-8", "mnist5k", CPU)
    np.testing.assert_array_equal(one(imgs), two(imgs))
    assert not np.allclose(one(imgs), other(imgs))


def test_missing_weights_file_is_one_config_error_naming_it(repo, tmp_path):
    missing = tmp_path / "nope.pth"
    p = _params(repo, weights={"inception": str(missing)}, allow_download=False)
    with pytest.raises(ConfigError, match=r"evaluation\.weights\.inception: .*nope\.pth not found"):
        extractors.build(p, "inception", "mnist5k", CPU)
    with pytest.raises(ConfigError, match="unknown extractor 'alexnet'"):
        extractors.build(p, "alexnet", "mnist5k", CPU)
    with pytest.raises(ConfigError, match="dinov2-vit-s-14 cannot load from a local file"):
        extractors.build(p, "dinov2-vit-s-14", "mnist5k", CPU)


# --- the real-feature cache and the evaluate stage, in a temporary project -------------


def _write_dataset(seed: int) -> None:
    arrays = {"train": _images(60, seed), "val": _images(30, seed + 100)}
    sha = {}
    for split, images in arrays.items():
        labels = np.arange(len(images)) % 10
        save_npz(paths.data("mnist5k")[split], images=images, labels=labels)
        sha[f"{split}_images"], sha[f"{split}_labels"] = sha256_array(images), sha256_array(labels)
    write_json(paths.data("mnist5k")["manifest"], {"dataset": "mnist5k", "sha256": sha})


def _write_classifier(seed: int) -> None:
    torch.manual_seed(seed)
    model = Classifier(1, 10)
    state = {"channels": 1, "num_classes": 10, "state_dict": model.state_dict()}
    save_torch(paths.classifier("mnist5k")["model"], state)


@pytest.fixture
def project(repo, tmp_path, monkeypatch):
    p = _params(repo, extra_extractors=["random-classifier-0"])
    monkeypatch.chdir(tmp_path)
    _write_dataset(0)
    _write_classifier(0)
    calls = []
    real_embed = Extractor.embed

    def counting_embed(self, images, batch_size=64):
        calls.append((self.name, len(images)))
        return real_embed(self, images, batch_size)

    monkeypatch.setattr(Extractor, "embed", counting_embed)
    return p, calls


def _delete_outputs():
    for ext in ("classifier", "random-classifier-0"):
        for f in paths.features("mnist5k", ext).values():
            Path(f).unlink()


def test_real_features_are_reused_and_invalidated(project):
    p, calls = project
    first = extract_real_features(p, "mnist5k")
    assert first == {"classifier": "extracted", "random-classifier-0": "extracted"}
    assert len(calls) == 4  # 2 extractors × 2 splits
    _delete_outputs()  # Snakemake/DVC delete declared outputs before a rerun
    calls.clear()
    assert extract_real_features(p, "mnist5k") == {
        "classifier": "reused",
        "random-classifier-0": "reused",
    }
    assert calls == []
    # New classifier weights: only the classifier's features are extracted again.
    _write_classifier(1)
    assert extract_real_features(p, "mnist5k")["classifier"] == "extracted"
    assert {name for name, _ in calls} == {"classifier"}
    # A changed dataset invalidates every extractor's features.
    _write_dataset(5)
    assert set(extract_real_features(p, "mnist5k").values()) == {"extracted"}


def test_evaluate_run_records_protocol_and_refuses_stale_features(project):
    from twostage.artifacts import save_npy
    from twostage.data.sources import DataError

    p, calls = project
    extract_real_features(p, "mnist5k")
    save_npy(paths.samples("autoregressive")["images"], _images(40, 9, shift=10))
    calls.clear()
    metrics = evaluate_run(p, "autoregressive")
    assert {name for name, n in calls} == {"classifier", "random-classifier-0"}
    assert all(n == 40 for _, n in calls)  # only the samples are embedded: no real features
    for key in ("fd_classifier", "precision", "recall", "density", "coverage"):
        assert np.isfinite(metrics[key])
    assert "fd_random-classifier-0" in metrics and "kid_random-classifier-0_mean" in metrics
    proto = metrics["protocol"]
    assert proto["extractor"] == "classifier" and proto["nearest_k"] == 3
    assert proto["n_fake"] == 40 and proto["resize"].startswith("none")
    assert proto["weights_sha256"] == file_sha256(paths.classifier("mnist5k")["model"])
    assert metrics["protocol_random-classifier-0"]["kid_subset_size"] == 40
    _write_dataset(3)
    with pytest.raises(DataError, match=r"key\.json: real features are stale \(dataset_sha256"):
        evaluate_run(p, "autoregressive")


def test_images_larger_than_the_dataset_are_scored_as_their_tiles(project):
    from twostage.artifacts import save_npy

    p, _ = project
    extract_real_features(p, "mnist5k")
    samples = _images(40, 9, shift=10)  # 32×32, the dataset's size
    save_npy(paths.samples("autoregressive")["images"], samples)
    direct = evaluate_run(p, "autoregressive")
    # The same 40 images as 10 images of 2 × 2 tiles each (64×64): the very same scores.
    large = samples.reshape(10, 2, 2, 32, 32, 1).transpose(0, 1, 3, 2, 4, 5)
    save_npy(paths.samples("autoregressive")["images"], large.reshape(10, 64, 64, 1))
    assert evaluate_run(p, "autoregressive") == direct


class _PerfectAutoencoder(torch.nn.Module):
    """Decodes an image's encoding back to the very image; a latent vector to a fixed
    projection of it (the calibration's bad model)."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(4, 32 * 32, generator=torch.Generator().manual_seed(0))

    def encode(self, x):
        return x

    def decode(self, z):
        return z if z.dim() == 4 else torch.tanh(z @ self.proj).view(-1, 1, 32, 32)


def test_stage1_ceiling_of_a_perfect_autoencoder_is_the_calibration_floor(project, monkeypatch):
    from twostage.evaluate import reconstruction, stages

    p, _ = project
    p.data["evaluation"]["n_samples"] = 20  # of 30 validation images: both rows take the first 20
    extract_real_features(p, "mnist5k")
    for module in (reconstruction, stages):
        monkeypatch.setattr(module, "load_autoencoder", lambda *args: _PerfectAutoencoder())
    floor = stages.calibrate(p, "ae_mnist")["real_val_vs_train"]
    recon = reconstruction.evaluate_reconstruction(p, "ae_mnist")
    assert recon["mse"] == 0 and recon["n_images"] == 30
    # Same images, same protocol: the ceiling of a lossless stage 1 is the floor, exactly.
    assert recon["decoded_val_vs_train"] == floor
    assert floor["protocol"]["n_fake"] == 20 and floor["protocol"]["reference"] == "train"
    assert {"fd_classifier", "precision", "recall", "density", "coverage"} <= set(floor)


def test_plan_extracts_every_extractor_and_depends_on_its_weights(repo):
    from twostage.plan import evaluate_job, extract_features_job, neighbours_job

    weights = "resources/weights/weights-inception-2015-12-05-6726825d.pth"
    p = _params(repo, extra_extractors=["inception", "random-classifier-0"])
    extract = extract_features_job(p, "mnist5k")
    for ext in ("classifier", "inception", "random-classifier-0"):
        assert set(paths.features("mnist5k", ext).values()) <= set(extract.outs)
    assert weights in extract.deps and weights in evaluate_job(p, "autoregressive").deps
    # Default params: offline, no weights files needed anywhere in the DAG.
    default = _params(repo)
    assert not any(
        d.startswith("resources/") for d in extract_features_job(default, "mnist5k").deps
    )
    assert not any(
        d.startswith("resources/") for d in neighbours_job(default, "autoregressive").deps
    )


def test_reconstruction_evaluation_reads_everything_the_calibration_floor_reads(repo):
    from twostage.plan import calibrate_job, evaluate_reconstruction_job

    weights = "resources/weights/weights-inception-2015-12-05-6726825d.pth"
    p = _params(repo, extractor="inception", weights={"inception": weights})
    floor, ceiling = calibrate_job(p, "vq_mnist"), evaluate_reconstruction_job(p, "vq_mnist")
    # The stage-1 ceiling is scored like the floor: a change to any of its inputs reruns both.
    assert set(floor.deps) <= set(ceiling.deps) and weights in ceiling.deps
    assert set(floor.params) <= set(ceiling.params)
    assert len(ceiling.deps) == len(set(ceiling.deps))


def test_a_new_extractor_is_one_registration(repo, monkeypatch):
    seen = []

    def build(p, match, dataset, device):
        seen.append(match[1])
        return extractors.build(p, "random-classifier-3", dataset, device)

    entry = extractors.Registration(r"pixels-(\d+)", build, pretrained=False, shown="pixels-<n>")
    monkeypatch.setattr(extractors, "REGISTRY", (*extractors.REGISTRY, entry))
    p = _params(repo)
    assert extractors.build(p, "pixels-5", "mnist5k", CPU).name == "random-classifier-3"
    assert seen == ["5"] and not extractors.is_pretrained("pixels-5")
    assert extractors.is_pretrained("inception") and not extractors.is_pretrained("classifier")
    with pytest.raises(ConfigError, match=r"unknown extractor 'pixels' \(known: .*pixels-<n>"):
        extractors.build(p, "pixels", "mnist5k", CPU)
