"""The parity bench's own pieces, with known answers (the reference checkout is not needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_bench


@pytest.fixture(scope="module")
def parity():
    return load_bench("reference_parity")


def test_full_sum_elbo_of_a_uniform_denoiser_is_log2_k(parity):
    """Every masked token costs ln K, and E[#masked at t] / t = L / T: the sum is log2 K."""
    k, length = 32, 16
    tokens = torch.randint(0, k, (4000, length), generator=torch.Generator().manual_seed(0))

    def uniform(z):
        return torch.zeros(*z.shape, k)

    bits = parity.full_sum_elbo(uniform, tokens, mask_id=k, seed=3)
    assert bits == pytest.approx(math.log2(k), rel=0.01)


def test_full_sum_elbo_of_a_perfect_denoiser_is_zero_and_masks_depend_on_seed_only(parity):
    k = 8
    tokens = torch.randint(0, k, (50, 16), generator=torch.Generator().manual_seed(1))

    def oracle(z):  # knows the clean grid: one-hot logits of the truth
        return 50.0 * torch.nn.functional.one_hot(tokens[: len(z)], k).float()

    assert parity.full_sum_elbo(oracle, tokens, mask_id=k, seed=0, batch_size=50) < 1e-10

    def noisy(z):
        return torch.nn.functional.one_hot(tokens[: len(z)], k).float()

    first = parity.full_sum_elbo(noisy, tokens, mask_id=k, seed=5, batch_size=50)
    assert parity.full_sum_elbo(noisy, tokens, mask_id=k, seed=5, batch_size=50) == first
    assert parity.full_sum_elbo(noisy, tokens, mask_id=k, seed=6, batch_size=50) != first


def test_cuda_device_arguments_are_redirected(parity):
    redirect = parity._DeviceRedirect(torch, "cpu")
    x = redirect.ones((2, 3), device="cuda")
    assert x.device.type == "cpu" and x.shape == (2, 3)
    assert redirect.zeros_like(x, device="cuda").device.type == "cpu"
    assert redirect.long is torch.long and redirect.Tensor is torch.Tensor
    assert isinstance(x, redirect.Tensor)


def test_interval_is_the_student_t_interval(parity):
    mean, sd, half = parity.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and sd == pytest.approx(math.sqrt(2.5))
    # t(0.975, 4) = 2.7764451
    assert half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    p_better = parity.welch_not_worse([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    p_worse = parity.welch_not_worse([2.0, 2.1, 1.9], [1.0, 1.1, 0.9])
    assert p_better < 0.01 < 0.99 < p_worse
    assert np.isnan(parity.interval([4.0])[1])


def test_paired_ratio_pairs_by_seed_and_skips_unshared_seeds(parity):
    def run(arm, seed, fd):
        return {"arm": arm, "seed": seed, "sample_fd": {"fd_classifier": fd}}

    # Per-seed ratios 1.0, 2.0, 3.0 (seed 9 has no partner): mean 2, sd 1, t(0.975, 2) = 4.302653.
    results = [
        run("ours", 1, 10.0),
        run("ours", 2, 20.0),
        run("ours", 3, 30.0),
        run("ours", 9, 5.0),
    ]
    results += [run("reference", 1, 10.0), run("reference", 2, 10.0), run("reference", 3, 10.0)]
    seeds, mean, low, high = parity.paired_ratio(
        results, ("ours", "sample_fd"), ("reference", "sample_fd"), "fd_classifier"
    )
    assert seeds == [1, 2, 3] and mean == pytest.approx(2.0)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and low < mean
    one_seed = [run("ours", 1, 10.0), run("reference", 1, 10.0), run("reference", 2, 1.0)]
    assert (
        parity.paired_ratio(
            one_seed, ("ours", "sample_fd"), ("reference", "sample_fd"), "fd_classifier"
        )
        is None
    )


def _job(parity, project, tmp_path, arm="ours", commit="abc"):
    job = {
        "arm": arm,
        "seed": 300,
        "prior": "absorbing_mnist",
        "profile": {"seed": 300, "checkpoint_every": 0, "priors": {"absorbing_mnist": {}}},
        "scratch": str(tmp_path / "scratch" / arm),
        "images": 5000,
        "sample_steps": 16,
        "temperature": 0.8,
        "sample_seed": 10_300,
        "elbo_seed": 1234,
        "threads": 1,
        "file": str(tmp_path / f"{arm}.json"),
        "reference_commit": commit,
    }
    job["effective"] = parity.effective_settings(project, job)
    job["key"] = parity.cache_key(job)
    return job


def test_a_cached_run_is_reused_only_for_the_same_settings_code_and_reference(
    parity, repo, tmp_path, monkeypatch
):
    import json
    import shutil

    from twostage.provenance import versions

    project = tmp_path / "project"
    shutil.copytree(repo / "params", project / "params")
    first = _job(parity, project, tmp_path)
    assert first["effective"]["prior"]["ema_decay"] == 0.995  # the defaults, filled in
    Path(first["file"]).write_text(json.dumps({"cache_key": first["key"]}))
    assert parity.reusable(_job(parity, project, tmp_path))

    # A changed default: the override profile is the same, the run is not.
    priors = project / "params/priors.yaml"
    priors.write_text(priors.read_text().replace("steps: 6000", "steps: 5000", 1))
    changed = _job(parity, project, tmp_path)
    assert changed["profile"] == first["profile"] and not parity.reusable(changed)
    priors.write_text(priors.read_text().replace("steps: 5000", "steps: 6000", 1))

    # Other training code.
    real = versions.code_hashes
    monkeypatch.setattr(versions, "code_hashes", lambda p: {k: v + "x" for k, v in real(p).items()})
    assert not parity.reusable(_job(parity, project, tmp_path))
    monkeypatch.setattr(versions, "code_hashes", real)

    # Another reference commit matters to the reference arm only.
    ref = _job(parity, project, tmp_path, arm="reference")
    Path(ref["file"]).write_text(json.dumps({"cache_key": ref["key"]}))
    assert not parity.reusable(_job(parity, project, tmp_path, arm="reference", commit="def"))
    assert parity.reusable(_job(parity, project, tmp_path, commit="def"))


def test_both_selections_keep_the_best_bound_and_the_best_sample_fd(parity):
    """The trainer's ``on_evaluation`` hook: each selection keeps its own best step's weights."""
    kept: dict = {}
    keep = parity.keep_both_selections(kept)
    model = torch.nn.Linear(1, 1)
    rows = [(250, 5.0, 40.0), (500, 4.0, 30.0), (750, 4.5, 20.0), (1000, 4.2, 25.0)]
    for step, bits, fd in rows:
        with torch.no_grad():
            model.weight.fill_(step)
        keep(step, model, {"val_bits": bits, "val_sample_fd": fd})
    assert kept["val_bound"].step == 500 and kept["val_bound"].weights["weight"].item() == 500
    assert kept["sample_fd"].step == 750 and kept["sample_fd"].weights["weight"].item() == 750
    without_fd: dict = {}
    parity.keep_both_selections(without_fd)(250, model, {"val_bits": 5.0})
    assert set(without_fd) == {"val_bound"}  # no sample FD logged: no such selection
