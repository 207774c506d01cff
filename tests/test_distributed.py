"""Data-parallel prior training: 2 processes under torchrun (gloo, CPU) follow the same loss
trajectory as one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from twostage.config import ConfigError, load_params, with_defaults
from twostage.images import to_tensor
from twostage.models.autoencoders.continuous import ContinuousAutoencoder
from twostage.models.autoencoders.vq import VQAutoencoder
from twostage.train import distributed
from twostage.train.continuous_ae import autoencoder_loss
from twostage.train.distributed import Context, needs_launch
from twostage.train.vq_step import VQTrainer

PROFILE = "params/profiles/ddp-test.yaml"
OVERRIDES = """\
distributed: {nproc: %d, backend: gloo}
priors:
  autoregressive_mnist: {n_layer: 1, n_embd: 32, n_head: 2, steps: 12, eval_every: 6,
                         warmup_steps: 2, batch_size: %d,
                         # float32, no dropout draws: the two runs must differ by float order only
                         dropout: 0.0, ema_decay: 0.0, lr_schedule: constant, cpu_bf16: false,
                         sample_fd_images: 0, select_by: val_bound}
"""


def _project(root: Path, repo: Path, nproc: int, batch_size: int = 16) -> Path:
    shutil.copytree(repo / "params", root / "params")
    (root / PROFILE).write_text(OVERRIDES % (nproc, batch_size))
    rng = np.random.default_rng(0)
    latents = root / "results/latents/vq_mnist"
    latents.mkdir(parents=True)
    for split, n in (("train", 64), ("val", 16)):
        np.save(latents / f"{split}.npy", rng.integers(0, 128, (n, 4, 4)).astype(np.int16))
    return root


def _train(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["twostage", "--profile", PROFILE, "train-prior", "autoregressive_mnist"],
        cwd=root,
        env={**env, "TWOSTAGE_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=1800,  # minutes on a quiet machine; room for a busy one
    )


def _losses(root: Path) -> np.ndarray:
    with open(root / "results/priors/autoregressive_mnist/train_log.csv") as f:
        return np.array([float(row["loss"]) for row in csv.DictReader(f)])


def test_shards_split_the_global_batch_in_order():
    batch = np.arange(8)
    assert Context(0, 2).shard(batch).tolist() == [0, 1, 2, 3]
    assert Context(1, 2).shard(batch).tolist() == [4, 5, 6, 7]
    assert Context().shard(batch).tolist() == list(range(8))


def test_only_the_user_process_launches(repo: Path, monkeypatch):
    params = load_params(root=repo)
    params.data["distributed"] = {"nproc": 2}
    for stage, name in [
        ("train_prior", "autoregressive_mnist"),
        ("train_prior", "glf_mnist"),
        ("train_autoencoder", "vq_mnist"),
        ("train_autoencoder", "vae_mnist"),
    ]:
        assert needs_launch(params, stage, name), (stage, name)
    # Small fits on cached latents run in one process; so do stages that do not train.
    assert not needs_launch(params, "train_prior", "gmm_rae_mnist")
    assert not needs_launch(params, "train_prior", "flow_vae_mnist")
    assert not needs_launch(params, "sample", "autoregressive")
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside torchrun: run, do not launch again
    assert not needs_launch(params, "train_prior", "autoregressive_mnist")


@pytest.mark.slow
def test_two_processes_follow_the_single_process_trajectory(tmp_path, repo, tool_env):
    single = _project(tmp_path / "single", repo, nproc=1)
    double = _project(tmp_path / "ddp", repo, nproc=2)
    for root in (single, double):
        proc = _train(root, tool_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and "--nproc_per_node=2" in proc.stderr
    a, b = _losses(single), _losses(double)
    assert len(a) == len(b) == 12 and a[-1] < a[0]
    # The same updates up to float summation order (gradients are averaged over two halves).
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    metrics = json.loads((double / "results/priors/autoregressive_mnist/metrics.json").read_text())
    assert metrics["processes"] == 2
    assert not list((double / ".twostage-state").rglob("*.pt"))


def test_batch_not_divisible_by_processes_is_a_config_error(tmp_path, repo):
    root = _project(tmp_path, repo, nproc=2, batch_size=15)
    with pytest.raises(
        ConfigError,
        match=r"ddp-test\.yaml: priors\.autoregressive_mnist\.batch_size: 15 is not divisible",
    ):
        load_params([PROFILE], root=root)


def test_autoencoder_batch_not_divisible_by_processes_is_a_config_error(tmp_path, repo):
    root = _ae_project(tmp_path, repo, nproc=3)  # the tiny autoencoders' batch is 8
    with pytest.raises(
        ConfigError,
        match=r"ddp-test\.yaml: autoencoders\.vq_mnist\.batch_size: 8 is not divisible",
    ):
        load_params([PROFILE], root=root)


# --- Stage 1 through the CLI: 2 processes under torchrun against 1 ---------------------

AE_OVERRIDES = """\
checkpoint_every: %d
distributed: {nproc: %d, backend: gloo}
autoencoders:
  vq_mnist: {nf: 8, res_blocks: 0, codebook_size: 16, emb_dim: 8, steps: %d, eval_every: 4,
             batch_size: 8, dead_code_reinit_every: 2, adversarial: true, disc_start_step: 3,
             disc_ndf: 8, disc_layers: 2, diffaug: [brightness, translation], ema_decay: 0.9,
             grad_clip: 1.0}
  vae_mnist: {channels: [8, 16], fc_dim: 32, steps: 8, eval_every: 4, batch_size: 8}
  ae_mnist: {channels: [8, 16], fc_dim: 32}
priors:
  glf_mnist: {blocks: 2, hidden: 16, layers: 2, steps: 8, eval_every: 4, batch_size: 8}
"""


def _ae_project(root: Path, repo: Path, nproc: int, steps: int = 8, every: int = 0) -> Path:
    """Params with tiny autoencoders, and random 32×32 images in place of prepare-data's."""
    shutil.copytree(repo / "params", root / "params")
    (root / PROFILE).write_text(AE_OVERRIDES % (every, nproc, steps))
    data = root / "results/data/mnist5k"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 32)):
        images = rng.integers(0, 256, (n, 32, 32, 1)).astype(np.uint8)
        np.savez(data / f"{split}.npz", images=images, labels=np.zeros(n, dtype=np.int64))
    return root


def _train_autoencoder(
    root: Path, env: dict, name: str, nproc: int, threads: int | None = None, **popen
):
    # One thread per process by default: the convolutions then sum in the same order, and
    # what remains is the order of the gradient average over the two halves of the batch.
    stage = "train-prior" if name.startswith("glf") else "train-autoencoder"
    cmd = ["twostage", "--profile", PROFILE, stage, name]
    env = {**env, "TWOSTAGE_THREADS": str(threads or nproc)}
    if popen:
        return subprocess.Popen(cmd, cwd=root, env=env, **popen)
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1800)


def _results(root: Path, name: str) -> Path:
    return root / "results" / ("priors" if name.startswith("glf") else "autoencoders") / name


def _log(root: Path, name: str) -> dict[str, np.ndarray]:
    with open(_results(root, name) / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] else np.nan for r in rows]) for k in rows[0]}


def _checkpoint(root: Path, name: str) -> dict:
    return torch.load(_results(root, name) / "model.pt", weights_only=True)


def _zero_gradient_tensors(root: Path, name: str, state_dict: dict) -> set[str]:
    """Parameters whose gradient on a training batch is ~0 (relative to the largest)."""
    spec = load_params([PROFILE], root=root).autoencoder(name)
    x = to_tensor(np.load(root / "results/data/mnist5k/train.npz")["images"][:8])
    if spec["kind"] == "vq":
        model = VQAutoencoder(spec, 1, 32)
        model.load_state_dict(state_dict)
        recon, codebook_loss, _ = model(x)
        loss = (recon - x).abs().mean() + codebook_loss
    else:
        model = ContinuousAutoencoder(spec, 1, 32)
        model.load_state_dict(state_dict)
        loss = autoencoder_loss(model, spec, x, torch.Generator().manual_seed(0))[0]
    loss.backward()
    largest = max(float(q.grad.abs().max()) for q in model.parameters())
    return {n for n, q in model.named_parameters() if float(q.grad.abs().max()) < 1e-5 * largest}


def _count_off(single: dict, other: dict, noise_only: set[str]) -> tuple[int, int]:
    """Weights of ``other`` beyond float tolerance of ``single``'s, and how many were compared."""
    off = total = 0
    for key, value in single.items():
        if not value.is_floating_point():
            assert torch.equal(other[key], value), key  # counters, codebook usage
            continue
        diff = (other[key] - value).abs()
        assert diff.max() <= 3 * 1e-3 * 8, key
        if key not in noise_only and not key.endswith("running_mean"):
            off += int((diff > 1e-4 + 1e-3 * value.abs()).sum())
            total += value.numel()
    return off, total


def _assert_same_weights(
    single: dict,
    double: dict,
    reordered: dict,
    noise_only: set[str] = frozenset(),
    tight: float = 1.0,
) -> None:
    """Same weights, but for those that only rounding noise moves.

    Adam scales a gradient by its own size, so a parameter whose gradient is ~0 (a bias
    right before a norm; the norm's running mean follows it) moves by ~lr a step on
    float-order noise alone, differently in each run. Every element stays within Adam's
    largest move (lr = 1e-3, 8 steps); the others (a fraction ``tight`` of them) agree to
    float tolerance, or at least as many of them as agree between the single-process run
    and its reordering (``reordered``, within NOISE_FACTOR): rounding that grows past the
    tolerance in a few weights on one CPU's kernels is the run's own, not the split's. A
    codebook revived differently, or batch statistics of half a batch, would be off by the
    weights' own size (~0.1), or everywhere.
    """
    off, total = _count_off(single, double, noise_only)
    noise, _ = _count_off(single, reordered, noise_only)
    allowed = max((1 - tight) * total, NOISE_FACTOR * noise)
    assert off <= allowed, f"{off} of {total} weights differ ({noise} in the reordered run)"


# Two float summation orders of the same run drift apart at a rate set by the model and
# the CPU's kernels (the adversarial game and Adam on ~0 gradients amplify rounding), so the
# two-process run is held to the drift of a reordering of the one-process run itself:
# within NOISE_FACTOR times that run's distance, as far as it has grown by each step. Over
# the columns of these three models, on AVX-512 and on AVX2 kernels, the two-process
# distance was at most 3x the two-thread one; a real fault (half-batch statistics, a codebook
# revived differently) is off by the values' own size from the first steps on.
NOISE_FACTOR = 10
ROUNDING = 1e-6  # relative: float32 rounding of a logged value, where the noise is 0


def _assert_within_float_order_noise(single, double, reordered, column: str) -> None:
    finite = np.isfinite(single)
    assert np.array_equal(finite, np.isfinite(double)), column
    if not finite.any():  # a column this model does not log
        return
    a, b, c = single[finite], double[finite], reordered[finite]
    envelope = np.maximum.accumulate(np.abs(c - a))
    allowed = NOISE_FACTOR * envelope + ROUNDING * np.abs(a)
    worst = int(np.argmax(np.abs(b - a) - allowed))
    assert np.all(np.abs(b - a) <= allowed), (
        f"{column}: two processes {b[worst]:.6g} vs one {a[worst]:.6g} at logged row {worst}, "
        f"beyond {NOISE_FACTOR}x the float-order drift of the run itself ({envelope[worst]:.3g})"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vq_mnist", "vae_mnist", "glf_mnist"])
def test_two_processes_train_like_one(tmp_path, repo, tool_env, name):
    """The VQ-GAN (adversarial from step 3, dead codes revived every 2 steps, DiffAugment,
    EMA, clipping), the VAE (batch norm, noise per image) and GLF (autoencoder and flow):
    same loss curves, same weights."""
    runs = {n: _ae_project(tmp_path / f"p{n}", repo, nproc=n) for n in (1, 2)}
    for nproc, root in runs.items():
        proc = _train_autoencoder(root, tool_env, name, nproc)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--nproc_per_node=2" in proc.stderr
    # The same single-process run on two threads: the same arithmetic in another float
    # summation order, so its distance from the one-thread run is this CPU's own
    # float-order noise after the same steps.
    reordered = _ae_project(tmp_path / "p1t2", repo, nproc=1)
    proc = _train_autoencoder(reordered, tool_env, name, 1, threads=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single, double = _log(runs[1], name), _log(runs[2], name)
    noise = _log(reordered, name)
    assert single.keys() == double.keys() == noise.keys() and len(single["loss"]) == 8
    if name == "vq_mnist":
        assert np.isfinite(single["d_loss"][2:]).all()  # the discriminator trained
    for column in single:
        _assert_within_float_order_noise(single[column], double[column], noise[column], column)
    a, b, r = (_checkpoint(root, name) for root in (runs[1], runs[2], reordered))
    if name == "glf_mnist":
        # The flow sees latents of spread ~0.02: its first layers' gradients are so small
        # that Adam's ε (1e-8) is not negligible, and a few weights follow the noise.
        _assert_same_weights(a["state_dict"], b["state_dict"], r["state_dict"], tight=0.95)
        a, b, r = a["autoencoder"], b["autoencoder"], r["autoencoder"]
    ae = "ae_mnist" if name == "glf_mnist" else name
    noise_only = _zero_gradient_tensors(runs[1], ae, a["state_dict"])
    assert noise_only  # biases right before a norm: their gradient is 0 up to rounding
    # The plain autoencoder (squared error, no noise) amplifies rounding noise faster than
    # the VAE: its curve agrees to ~2e-4 after 8 steps, and its weights only within
    # Adam's bound. One step of it is checked exactly below (a continuous step, ae).
    tight = 0.0 if name == "glf_mnist" else 1.0
    _assert_same_weights(a["state_dict"], b["state_dict"], r["state_dict"], noise_only, tight)
    if name == "vq_mnist":
        # The adversarial game amplifies differences; batch norm makes the scale of the
        # convolutions before it free. Half-batch statistics would differ everywhere.
        _assert_same_weights(a["discriminator"], b["discriminator"], r["discriminator"], tight=0.99)
    metrics = json.loads((_results(runs[2], name) / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert not list((runs[2] / ".twostage-state").rglob("*.pt"))


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path, repo, tool_env):
    clean = _ae_project(tmp_path / "clean", repo, nproc=2, steps=24, every=5)
    killed = _ae_project(tmp_path / "killed", repo, nproc=2, steps=24, every=5)
    proc = _train_autoencoder(clean, tool_env, "vq_mnist", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]

    state = killed / ".twostage-state/train_autoencoder/vq_mnist.pt"
    run = _train_autoencoder(
        killed, tool_env, "vq_mnist", 2, start_new_session=True, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not state.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)  # the launcher, torchrun and both workers
    run.wait()
    assert state.exists() and not (_results(killed, "vq_mnist") / "model.pt").exists()

    proc = _train_autoencoder(killed, tool_env, "vq_mnist", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stderr, proc.stderr[-3000:]
    # Every random number (batches, DiffAugment, revived codes) is the global batch's, the
    # same on every rank: rank 0's saved state restarts both ranks exactly.
    _assert_close(
        _checkpoint(killed, "vq_mnist")["state_dict"],
        _checkpoint(clean, "vq_mnist")["state_dict"],
        rtol=1e-6,
        atol=1e-7,
    )
    a, b = _log(clean, "vq_mnist"), _log(killed, "vq_mnist")
    for column in a:
        np.testing.assert_allclose(b[column], a[column], rtol=1e-6, err_msg=column)


# --- One step of stage 1 in 2 processes (gloo, spawned) against one process -------------

VQGAN = with_defaults(
    "autoencoders",
    dict(
        kind="vq",
        nf=8,
        ch_mult=[1, 2],
        res_blocks=0,
        attn_resolutions=[],
        codebook_size=16,
        emb_dim=4,
        beta=0.25,
        lr=0.0,  # no update: the weights after the step are the revived codebook, exactly
        disc_lr=0.0,
        batch_size=8,
        steps=4,
        eval_every=4,
        dead_code_reinit_every=1,  # every code is dead at the first call: all are revived
        adversarial=True,
        disc_start_step=1,
        disc_ndf=8,
        disc_layers=2,  # batch norm in the discriminator
        diffaug=["brightness", "saturation", "contrast", "translation"],
    ),
)
CONTINUOUS = {
    "vae": dict(kind="vae", latent_dim=4, channels=[8, 16], fc_dim=32, beta=1.0),
    "ae": dict(kind="ae", latent_dim=4, channels=[8, 16], fc_dim=32),
}


def _global_batch() -> torch.Tensor:
    return torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _stage1_step(ctx: Context) -> dict:
    """One VQ-GAN step on rank ``ctx.rank``'s slice; its loss terms, gradients and state."""
    torch.manual_seed(0)
    model = VQAutoencoder(VQGAN, 1, 16)
    trainer = VQTrainer(model, VQGAN, 1, torch.device("cpu"), ctx=ctx)
    row = trainer.step(ctx.shard(_global_batch()), 1)
    return {
        "row": row,
        "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
        "disc_grads": {n: p.grad.clone() for n, p in trainer.disc.named_parameters()},
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "disc_state": {k: v.clone() for k, v in trainer.disc.state_dict().items()},
        "rng": torch.get_rng_state(),
    }


def _continuous_step(ctx: Context, kind: str = "vae") -> dict:
    """One AE or VAE step (batch norm everywhere, VAE noise per image) on this rank's slice."""
    torch.manual_seed(0)
    spec = CONTINUOUS[kind]
    model = ContinuousAutoencoder(spec, 1, 16)
    noise = torch.Generator().manual_seed(1)
    loss_of = distributed.loss_module(
        model, ctx, torch.device("cpu"), lambda m, x: autoencoder_loss(m, spec, x, noise)
    )
    loss, terms = loss_of(ctx.shard(_global_batch()))
    loss.backward()
    return {
        "row": {k: float(v) for k, v in ctx.means(loss=loss, **terms).items()},
        "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _ae_step(ctx: Context) -> dict:
    return _continuous_step(ctx, "ae")


def _vae_step(ctx: Context) -> dict:
    return _continuous_step(ctx, "vae")


def _drifted(ctx: Context) -> dict:
    """Replicas that differ: check_replicas must stop every rank."""
    layer = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(layer.weight, float(ctx.rank))
    try:
        ctx.check_replicas(layer)
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": None}


def _worker(rank: int, what: str, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        result = globals()[what](Context(rank, 2))
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _two_processes(what: str, tmp_path: Path) -> list[dict]:
    out = str(tmp_path / what)
    mp.spawn(_worker, args=(what, str(tmp_path / "rendezvous"), out), nprocs=2)
    return [torch.load(f"{out}.{rank}", weights_only=False) for rank in range(2)]


def _assert_close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tol, msg=lambda m, k=key: f"{k}: {m}")


def test_a_stage1_step_in_two_processes_is_the_single_process_step(tmp_path):
    """Loss terms (λ included), averaged gradients of autoencoder and discriminator, revived
    codebook, usage counts, the discriminator's batch-norm statistics and the random state
    after the step: each rank's equals one process's on the whole batch."""
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        single = _stage1_step(Context())
    ranks = _two_processes("_stage1_step", tmp_path)
    for rank in ranks:
        assert rank["row"].keys() == single["row"].keys()
        np.testing.assert_allclose(
            [rank["row"][k] for k in single["row"]], list(single["row"].values()), rtol=1e-5
        )
        _assert_close(rank["grads"], single["grads"], rtol=1e-4, atol=1e-6)
        _assert_close(rank["disc_grads"], single["disc_grads"], rtol=1e-4, atol=1e-6)
        _assert_close(rank["state"], single["state"], rtol=1e-5, atol=1e-7)
        _assert_close(rank["disc_state"], single["disc_state"], rtol=1e-5, atol=1e-7)
        assert torch.equal(rank["rng"], single["rng"])  # the same draws, in the same order
    assert single["row"]["disc_weight"] > 0 and single["state"]["quantizer.usage"].sum() == 8 * 64
    # Every code was revived onto an encoding: the codebook moved from its initialisation.
    torch.manual_seed(0)
    initial = VQAutoencoder(VQGAN, 1, 16).quantizer.embedding.weight
    assert not torch.allclose(single["state"]["quantizer.embedding.weight"], initial)
    for key in ranks[0]["state"]:  # and the two replicas hold the same tensors, bit for bit
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_a_continuous_step_in_two_processes_is_the_single_process_step(tmp_path, kind):
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        single = _continuous_step(Context(), kind)
    for rank in _two_processes(f"_{kind}_step", tmp_path):
        np.testing.assert_allclose(list(rank["row"].values()), list(single["row"].values()), 1e-5)
        # Nats per image: gradients in the tens; a bias before a batch norm has gradient 0.
        _assert_close(rank["grads"], single["grads"], rtol=1e-4, atol=1e-4)
        _assert_close(rank["state"], single["state"], rtol=1e-5, atol=1e-7)  # running stats


def test_replicas_that_drift_apart_stop_the_run(tmp_path):
    errors = [r["error"] for r in _two_processes("_drifted", tmp_path)]
    assert all(e and "replicas diverged" in e for e in errors)
