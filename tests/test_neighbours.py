"""Nearest neighbours: LPIPS as an embedding, the chunked search, memorization statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from twostage import paths
from twostage.artifacts import save_npy, save_npz, save_torch
from twostage.config import ConfigError
from twostage.evaluate.neighbours import (
    LpipsEmbedding,
    memorization,
    nearest,
    nearest_neighbours,
    pixel_embedding,
)
from twostage.models.classifier import Classifier


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8, 8)).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(128 + 60 * base, 0, 255).astype(np.uint8)[..., None]


def _to_lpips_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x.repeat(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lpips_random():
    torch.manual_seed(0)
    return LpipsEmbedding(None)


def test_embedding_search_matches_one_lpips_call_per_pair(lpips_random):
    queries, train = _images(3, 0), _images(10, 1)
    dist, idx = nearest(lpips_random(queries), lpips_random(train), k=3, chunk_size=5)
    with torch.no_grad():
        q, t = _to_lpips_input(queries), _to_lpips_input(train)
        direct = torch.stack(
            [
                torch.cat(
                    [lpips_random.net(q[i : i + 1], t[j : j + 1]).flatten() for j in range(len(t))]
                )
                for i in range(len(q))
            ]
        ).double()
    ref_d, ref_i = direct.sort(dim=1)
    np.testing.assert_array_equal(idx.numpy(), ref_i[:, :3].numpy())
    np.testing.assert_allclose(dist.numpy(), ref_d[:, :3].numpy(), rtol=1e-4, atol=1e-7)


def test_backbone_loads_from_a_torchvision_alexnet_file(tmp_path):
    torch.manual_seed(1)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(alexnet.state_dict(), path)
    emb = LpipsEmbedding(path)
    torch.testing.assert_close(getattr(emb.net.net.slice1, "0").weight, alexnet.features[0].weight)
    torch.testing.assert_close(getattr(emb.net.net.slice5, "10").bias, alexnet.features[10].bias)
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"evaluation\.weights\.lpips_alex: .*bad\.pth"):
        LpipsEmbedding(tmp_path / "bad.pth")


def test_chunked_search_equals_brute_force():
    rng = np.random.default_rng(0)
    q, keys = torch.from_numpy(rng.normal(size=(7, 5))), torch.from_numpy(rng.normal(size=(50, 5)))
    dist, idx = nearest(q, keys, k=4, chunk_size=6)
    brute = torch.cdist(q, keys) ** 2
    ref_d, ref_i = brute.sort(dim=1)
    np.testing.assert_array_equal(idx.numpy(), ref_i[:, :4].numpy())
    np.testing.assert_allclose(dist.numpy(), ref_d[:, :4].numpy(), atol=1e-10)


def test_copies_of_training_images_are_flagged():
    train, val = _images(40, 0), _images(20, 1)
    copies, fresh = train[:10], _images(10, 2)
    embed = pixel_embedding
    train_e = embed(train)
    val_nn = nearest(embed(val), train_e, 1)[0][:, 0].sqrt().numpy()
    for samples, expected in ((copies, 1.0), (fresh, 0.0)):
        sample_nn = nearest(embed(samples), train_e, 1)[0][:, 0].sqrt().numpy()
        out = memorization(sample_nn, val_nn)
        assert out["fraction_closer_than_any_val"] == expected
    assert memorization(np.zeros(10), val_nn)["flagged"] == list(range(10))


def test_stage_writes_grids_and_records_skipped_lpips(repo, tmp_path, monkeypatch):
    from twostage.config import load_params

    p = load_params(root=repo)
    p.data["evaluation"]["neighbours"].update(n_samples=3, k=2, n_val=10, chunk_size=16)
    p.data["evaluation"]["weights"].pop("lpips_alex", None)
    monkeypatch.chdir(tmp_path)
    for split, n in (("train", 30), ("val", 12)):
        save_npz(paths.data("mnist5k")[split], images=_images(n, n), labels=np.arange(n) % 10)
    model = Classifier(1, 10)
    save_torch(
        paths.classifier("mnist5k")["model"],
        {"channels": 1, "num_classes": 10, "state_dict": model.state_dict()},
    )
    noise = np.random.default_rng(9).integers(0, 256, (6, 32, 32, 1), dtype=np.uint8)
    samples = np.concatenate([_images(30, 30)[:4], noise])  # 4 copies of training images
    save_npy(paths.samples("autoregressive")["images"], samples)
    nearest_neighbours(p, "autoregressive")
    out = paths.neighbours("autoregressive")
    for key in ("grid", "histogram", "flagged"):
        assert (tmp_path / out[key]).stat().st_size > 0
    metrics = json.loads((tmp_path / out["metrics"]).read_text())
    assert "lpips_alex is not set" in metrics["skipped"]["lpips"]
    assert metrics["primary_distance"] == "classifier"
    assert metrics["pixel_l2"]["flagged"] == [0, 1, 2, 3]
    assert metrics["pixel_l2"]["fraction_closer_than_any_val"] == pytest.approx(0.4)
    assert (
        metrics["protocol"]["k"] == 2
        and len(metrics["classifier"]["neighbours"]["train_index"][0]) == 2
    )
