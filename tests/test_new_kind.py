"""A new model kind is one registration in kinds.KINDS plus its own module(s)
(docs/architecture.md, "Adding a model kind"), shown by doing it, for each family.

In a copy of the shared smoke build (conftest.smoke_dag), the test adds two throwaway prior
kinds by writing only their modules (texts below) and their entries in ``KINDS``, then uses
them as a user would: a prior of each in params/priors.yaml, a run of each in
params/evaluation.yaml, and the smoke profile's targets narrowed to those runs:

- ``unigram``, a token prior on the VQ codes: each token of the grid drawn from its own
  position's categorical, independently of the others (one model module, trained by the
  shared token-prior trainer);
- ``diag_gaussian``, a continuous prior on the RAE's latent vectors: a Gaussian with a
  diagonal covariance fitted in closed form (a model module and a trainer module).

Snakemake then builds those kinds' share of the smoke DAG (training, sampling, evaluation,
nearest neighbours and the report) and nothing upstream: the autoencoders, their latents and
the real features of the smoke build are reused as they are. The samples, their evaluation and
the report's rows of the new runs are checked for real values.

Every subprocess runs the copy's own code (PYTHONPATH=<copy>/src), so the registrations count.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SMOKE, copy_built, narrow_targets
from test_staleness import _env, _run, snakemake_jobs

pytestmark = pytest.mark.slow

# The smoke build's own profile list: a rule's shell line names the profiles, so another
# profile would be a code change to every rule for Snakemake, and rerun the whole DAG.
CONFIG = ["--configfile", SMOKE]
DRY_RUN = ["snakemake", "-n", "-p", "--cores", "1", *CONFIG]

# unigram's module: the token prior interface of docs/architecture.md ("A token prior").
UNIGRAM_MODULE = '''"""A token prior without context: every position of the grid has its own
categorical over the codebook, and the tokens of a grid are independent (a test's throwaway)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PositionLogits(nn.Module):
    """The prior's network: the same logits (length x codebook) whatever the input tokens."""

    def __init__(self, codebook_size: int, length: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(length, codebook_size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(tokens.shape[0], -1, -1)


class UnigramPrior(nn.Module):
    def __init__(self, spec: dict, codebook_size: int, length: int):
        super().__init__()
        self.codebook_size, self.length = codebook_size, length
        self.denoiser = PositionLogits(codebook_size, length)

    def loss(self, z0: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact NLL in bits per token, as training loss and as bound."""
        logits = self.denoiser(z0).float()
        nats = F.cross_entropy(logits.reshape(-1, self.codebook_size), z0.reshape(-1).long())
        bits = nats / math.log(2)
        return bits, bits.detach()

    @torch.no_grad()
    def sample(self, n, steps, temperature=1.0, generator=None, device=None, on_step=None, **_):
        device = device or self.denoiser.logits.device
        blank = torch.zeros(n, self.length, dtype=torch.long, device=device)
        probs = torch.softmax(self.denoiser(blank).float() / temperature, dim=-1)
        tokens = torch.multinomial(probs.reshape(-1, self.codebook_size), 1, generator=generator)
        return tokens.view(n, self.length)
'''

# diag_gaussian's modules: the continuous prior interface ("A continuous prior"), a model
# (log_prob, sample, a builder) and a trainer writing the files prior_checkpoint describes.
GAUSSIAN_MODULE = '''"""A Gaussian with a diagonal covariance over latent vectors (a test's
throwaway kind)."""

from __future__ import annotations

import torch
from torch import nn


class DiagonalGaussian(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.mean, self.std).log_prob(z).sum(-1)

    def sample(self, n: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        noise = torch.randn(n, len(self.mean), generator=generator, device=self.mean.device)
        return self.mean + temperature * self.std * noise


def build_diag_gaussian(spec: dict, latent_dim: int) -> DiagonalGaussian:
    return DiagonalGaussian(latent_dim)
'''

GAUSSIAN_TRAINER = '''"""Fit the diagonal Gaussian prior to the training latents: their mean
and deviation."""

from __future__ import annotations

import time

from twostage import paths
from twostage.artifacts import save_torch, write_json
from twostage.config import Params
from twostage.models.priors.diag_gaussian import DiagonalGaussian
from twostage.train.common import CurveLog
from twostage.train.continuous_prior import (
    bits_per_dim,
    load_latent_vectors,
    mean_log_prob,
    prior_checkpoint,
)


def train_diag_gaussian(p: Params, name: str) -> dict:
    spec = p.prior(name)
    start = time.perf_counter()
    z_train = load_latent_vectors(spec["autoencoder"], "train")
    z_val = load_latent_vectors(spec["autoencoder"], "val")
    dim = z_train.shape[1]
    prior = DiagonalGaussian(dim)
    prior.mean.copy_(z_train.mean(0))
    prior.std.copy_(z_train.std(0))
    train_bits = bits_per_dim(mean_log_prob(prior, z_train), dim)
    val_bits = bits_per_dim(mean_log_prob(prior, z_val), dim)
    out = paths.prior(name)
    save_torch(out["model"], prior_checkpoint(spec, dim, prior.state_dict(), 1))
    log = CurveLog(["loss", "val_bits"])  # fitted once: one row
    log.add(1, loss=train_bits, val_bits=val_bits)
    log.write(out["curve"])
    metrics = {
        "val_bits_per_token": val_bits,
        "val_bound": "exact_nll_bits_per_latent_dim",
        "latent_dim": dim,
        "train_time_s": time.perf_counter() - start,
        "device": "cpu",
    }
    write_json(out["metrics"], metrics)
    return metrics
'''

MODULES = {
    "src/twostage/models/priors/unigram.py": UNIGRAM_MODULE,
    "src/twostage/models/priors/diag_gaussian.py": GAUSSIAN_MODULE,
    "src/twostage/train/diag_gaussian.py": GAUSSIAN_TRAINER,
}

# Their registrations, first in KINDS.
ENTRIES = """    "unigram": PriorKind(
        model="twostage.models.priors.unigram:UnigramPrior",
        trainer="twostage.train.token_prior:train_token_prior",
        continuous=False,
        curves=(("val_bits", LOWER),),
        sits_on=("vq",),
        samplers=("independent",),
        bound="exact_nll",
    ),
    "diag_gaussian": PriorKind(
        model="twostage.models.priors.diag_gaussian:build_diag_gaussian",
        trainer="twostage.train.diag_gaussian:train_diag_gaussian",
        continuous=True,
        curves=(("val_bits", LOWER),),
        single_process=True,
        sits_on=("ae", "rae", "vae"),
    ),
"""

# A prior of each kind, at the end of params/priors.yaml, as a user would add it. The token
# prior schema requires the shared Transformer's sizes; unigram ignores them.
PRIORS = """  unigram_mnist:
    kind: unigram
    autoencoder: vq_mnist
    n_layer: 1
    n_head: 1
    n_embd: 8
    dropout: 0.0
    lr: 0.05
    warmup_steps: 0
    batch_size: 64
    steps: 40
    eval_every: 20
    ema_decay: 0.0
    amp: false
    sample_fd_images: 16
  diag_gaussian_rae_mnist:
    kind: diag_gaussian
    autoencoder: rae_mnist
"""
# A run of each, first among the runs of params/evaluation.yaml.
RUNS = """  unigram:
    prior: unigram_mnist
    sampler: independent
    steps: 1
    temperature: 1.0
    batch_size: 100
  diag_gaussian:
    prior: diag_gaussian_rae_mnist
    sampler: ancestral
    temperature: 1.0
    batch_size: 100
"""
# The smoke profile's targets narrowed to the new runs and the two its claim compares (a
# claim's runs must be targets), all of them in the report.
TARGETS = ["absorbing_confidence", "glf", "unigram", "diag_gaussian"]
# run → its prior; each run is named after its prior's kind
NEW = {"unigram": "unigram_mnist", "diag_gaussian": "diag_gaussian_rae_mnist"}


def _insert(path: Path, after: str | None, text: str) -> None:
    """``text`` after the one line ``after`` of ``path`` (the end of the file if None)."""
    original = path.read_text()
    if after is None:
        assert original.endswith("\n")
        path.write_text(original + text)
        return
    lines = original.splitlines(keepends=True)
    [at] = [i for i, line in enumerate(lines) if line.startswith(after)]
    path.write_text("".join([*lines[: at + 1], text, *lines[at + 1 :]]))


def add_kinds(root: Path) -> None:
    """The whole of adding the kinds: their modules, their registrations, params using them."""
    for path, text in MODULES.items():
        assert not (root / path).exists()
        (root / path).write_text(text)
    kinds = root / "src/twostage/kinds.py"
    _insert(kinds, "KINDS = {", ENTRIES)
    assert yaml.safe_load((root / "params/priors.yaml").read_text()).keys() == {"priors"}
    _insert(root / "params/priors.yaml", None, PRIORS)
    _insert(root / "params/evaluation.yaml", "runs:", RUNS)
    narrow_targets(root, TARGETS)


@pytest.fixture(scope="module")
def built(smoke_dag: Path, tmp_path_factory, tool_env: dict) -> tuple[Path, set[str]]:
    """The copy with the kinds added, built by Snakemake for the narrowed targets; and the
    jobs its dry run listed before."""
    root = copy_built(smoke_dag, tmp_path_factory.mktemp("new-kinds") / "project")
    add_kinds(root)
    env = _env(tool_env, root)
    planned = snakemake_jobs(root, env, DRY_RUN)
    _run(["snakemake", "--cores", "2", *CONFIG], root, env, timeout=3600)
    return root, planned


def test_only_the_new_kinds_jobs_and_the_report_run(built, tool_env):
    root, planned = built
    stages = ("sample", "evaluate", "neighbours")
    new = {f"train_prior-{prior}" for prior in NEW.values()}
    new |= {f"{stage}-{run}" for run in NEW for stage in stages}
    assert planned == new | {"report"}
    assert snakemake_jobs(root, _env(tool_env, root), DRY_RUN) == set()  # built, and current


@pytest.mark.parametrize("run", NEW)
def test_a_new_kind_trains_samples_and_is_evaluated(built, run):
    root, _ = built
    results = root / "results"
    trained = json.loads((results / f"priors/{NEW[run]}/metrics.json").read_text())
    assert math.isfinite(trained["val_bits_per_token"])
    samples = np.load(results / f"samples/{run}/images.npy")
    reference = np.load(results / "samples/glf/images.npy")  # the smoke build's
    assert samples.dtype == np.uint8 and samples.shape == reference.shape
    assert samples.std() > 0
    scores = json.loads((results / f"eval/{run}/metrics.json").read_text())
    assert math.isfinite(scores["fd_classifier"]) and scores["fd_classifier"] > 0

    runs = pd.read_csv(results / "report/tables/runs.csv")
    row = runs[runs["run"] == run]
    assert len(row) == 1
    assert row["fd_classifier"].iloc[0] == pytest.approx(scores["fd_classifier"])
    assert row["prior_kind"].iloc[0] == run
    headline = rf"^\|[^|\n]*\b{run}\b[^|\n]*\|\s*{NEW[run]}\s*\|"  # run, prior, ...
    assert re.search(headline, (results / "report/report.md").read_text(), re.M)
    # The report's convergence check watches the curve the entry names.
    curves = pd.read_csv(results / "report/tables/convergence.csv")
    watched = curves[curves["model"] == NEW[run]]
    assert (run, "val_bits") in set(zip(watched["kind"], watched["column"], strict=True))


def test_the_token_kind_learned_the_codes_and_samples_once_per_image(built):
    results = built[0] / "results"
    trained = json.loads((results / "priors/unigram_mnist/metrics.json").read_text())
    assert trained["val_bound"] == "exact_nll"  # the entry's bound
    # A categorical per position fits the codes better than uniform ones (log2 of 32 codes).
    assert 0 < trained["val_bits_per_token"] < math.log2(32)
    assert math.isfinite(trained["val_sample_fd"])  # the training-time sample FD, raster order
    stats = json.loads((results / "samples/unigram/stats.json").read_text())
    assert stats["sampler"] == "independent" and stats["network_calls_per_sample"] == 1
