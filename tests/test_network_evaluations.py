"""Sampling cost is counted, not echoed: rows the prior's network evaluated per sample."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from twostage.config import Params, load_params
from twostage.models.priors.absorbing import AbsorbingDiffusion
from twostage.models.priors.autoregressive import AutoregressivePrior
from twostage.sample import sampler
from twostage.sample.network_evaluations import counting_evaluations, token_prior_network

SPEC = dict(n_layer=1, n_head=2, n_embd=16, dropout=0.0, loss_type="elbo", mask_schedule="random")
L, K = 16, 7  # a 4 × 4 token grid over 7 codes


def _absorbing() -> AbsorbingDiffusion:
    torch.manual_seed(0)
    return AbsorbingDiffusion(SPEC, codebook_size=K, length=L).eval()


def _sample(model, n, steps, **options):
    with counting_evaluations(token_prior_network(model)) as counted:
        z = model.sample(n, steps, generator=torch.Generator().manual_seed(1), **options)
    return z, counted


@pytest.mark.parametrize("sampler_name", ["random", "cosine", "confidence"])
def test_plain_sampler_evaluates_every_row_at_every_step(sampler_name):
    z, counted = _sample(_absorbing(), 40, L, sampler=sampler_name, compact=False)
    assert counted.calls == L and counted.rows == 40 * L and counted.per_sample(40) == L


@pytest.mark.parametrize("sampler_name", ["random", "cosine", "confidence"])
def test_compact_sampler_evaluates_fewer_rows_and_the_count_leaves_the_tokens_alone(
    sampler_name,
):
    model = _absorbing()
    z, counted = _sample(model, 40, L, sampler=sampler_name)
    assert counted.rows < 40 * L and counted.calls <= L
    # The hook changes nothing: the same generator gives the same tokens without it,
    # and the plain sampler's tokens.
    unhooked = model.sample(40, L, sampler=sampler_name, generator=torch.Generator().manual_seed(1))
    plain, _ = _sample(model, 40, L, sampler=sampler_name, compact=False)
    assert torch.equal(z, unhooked) and torch.equal(z, plain)


def test_compact_confidence_sampler_count_is_known():
    # Step 1: every row is all-masked, one shared evaluation. The cosine schedule over
    # 16 tokens in 4 steps reveals 2, 3, 5, 6 tokens per row, so every row changes at
    # steps 1..3 and is evaluated again at steps 2..4: 1 + 3n rows in 4 calls.
    z, counted = _sample(_absorbing(), 25, 4, sampler="confidence")
    assert counted.calls == 4 and counted.rows == 1 + 3 * 25
    assert counted.per_sample(25) == pytest.approx(3.04)


@pytest.mark.parametrize("use_cache", [True, False])
def test_autoregressive_prior_evaluates_each_row_once_per_token(use_cache):
    torch.manual_seed(0)
    model = AutoregressivePrior(SPEC, codebook_size=K, length=9).eval()
    with counting_evaluations(token_prior_network(model)) as counted:
        model.sample(6, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    assert counted.calls == 9 and counted.rows == 6 * 9 and counted.per_sample(6) == 9


class _Decoder:
    """Stands in for the autoencoder: token grids → 4×4 grey images (what is decoded
    does not matter here)."""

    token_side = 4

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, None].float() / K * 2 - 1


def test_stats_json_records_the_counted_evaluations(repo, tmp_path, monkeypatch):
    p = load_params(["params/profiles/smoke.yaml"], root=repo)
    data = copy.deepcopy(p.data)
    data["evaluation"]["n_samples"] = 30
    spec = data["runs"]["absorbing_confidence"]
    spec.update(batch_size=20, steps=4, cpu_bf16=False)  # two batches: 20 and 10 samples
    params = Params(data=data, files=p.files, origin=p.origin, sweep_of=p.sweep_of)
    model = _absorbing()
    rows: list[int] = []  # an independent count, by the test's own hook
    model.denoiser.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    monkeypatch.setattr(
        sampler,
        "load_models",
        lambda p, prior: (torch.device("cpu"), torch.Generator().manual_seed(0), model, _Decoder()),
    )
    monkeypatch.chdir(tmp_path)
    stats = sampler.sample_run(params, "absorbing_confidence")
    written = json.loads((tmp_path / "results/samples/absorbing_confidence/stats.json").read_text())
    assert written == stats
    # Per batch one shared all-masked row, then every row at steps 2..4 (see above).
    assert sum(rows) == 2 + 3 * 30 and len(rows) == 2 * 4
    assert written["network_calls_per_sample"] == pytest.approx(sum(rows) / 30)
    assert written["network_batched_calls"] == 8
    assert written["steps"] == 4 and written["network_calls_per_sample"] < 4


def test_a_larger_grid_run_samples_whole_images_of_tiles_and_counts_every_window(
    repo, tmp_path, monkeypatch
):
    p = load_params(["params/profiles/smoke.yaml"], root=repo)
    data = copy.deepcopy(p.data)
    data["evaluation"]["n_samples"] = 32
    spec = data["runs"]["absorbing_confidence"]
    spec.update(sampler="random", steps=4, grid=8, stride=2, batch_size=5, cpu_bf16=False)
    params = Params(data=data, files=p.files, origin=p.origin, sweep_of=p.sweep_of)
    monkeypatch.setattr(
        sampler,
        "load_models",
        lambda p, prior: (
            torch.device("cpu"),
            torch.Generator().manual_seed(0),
            _absorbing(),
            _Decoder(),
        ),
    )
    monkeypatch.chdir(tmp_path)
    stats = sampler.sample_run(params, "absorbing_confidence")
    images = np.load(tmp_path / "results/samples/absorbing_confidence/images.npy")
    # 8 × 8 tokens = 2 × 2 tiles of the 4 × 4 training grid: 32 / 4 = 8 images of 8 × 8.
    assert images.shape == (8, 8, 8, 1)
    assert stats["n_samples"] == 8 and stats["tiles_per_image"] == 4
    assert stats["token_grid"] == [8, 8]
    # Windows at 0, 2, 4 down and across: 9 per step, each row evaluated at every step.
    assert stats["network_calls_per_sample"] == 9 * 4
