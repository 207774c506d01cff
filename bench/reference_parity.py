"""Parity of the absorbing prior with the reference implementation, over training seeds.

    python bench/reference_parity.py --reference-src DIR [--prior absorbing_mnist]
        [--seeds 100-104] [--arms ours,reference] [--images 5000] [--jobs 2] [--out DIR]
        [--set KEY=VALUE ...] [--ar-set KEY=VALUE ...]

DIR is a checkout of github.com/samb-t/unleashing-transformers (not vendored: fetch it
yourself). Each arm is trained on this project's cached latents of the prior's
autoencoder (``results/latents/<ae>/``, from the default run) with the prior entry's
settings, through this project's trainer (train/token_prior.py: the same batches, optimizer,
learning-rate schedule, bf16 autocast, evaluations and checkpoint selection); the arms
differ only in the model code:

- ``ours``: models/priors/absorbing.py with its Transformer;
- ``reference``: the reference's ``AbsorbingDiffusion`` (its loss, its ``1 - t/T`` weight,
  its masking) with its ``Transformer`` as it ships (PyTorch's default init: its
  ``_init_weights`` is never applied), sampled by its own ``sample`` method unchanged.
  Its sampler hard-codes ``'cuda'``: the bench gives the module a ``torch`` whose tensor
  constructors put a ``'cuda'`` device on the CPU instead, so its files run unedited.
  Its random draws use the global generator; the bench seeds that from this project's
  generators before each call, so every run is reproducible;
- ``autoregressive``: this project's autoregressive prior entry (``--ar-prior``), for the
  comparison of the two priors at equal protocol. ``--set`` changes the absorbing arms'
  entry, ``--ar-set`` this one's, so each arm can be given the same trainer options.

Both selections are kept from every training run: the checkpoint with the best
validation bound and, when the prior entry has ``sample_fd_images`` > 0, the one with
the best sample FD (``select_by``). Each kept model is scored like the evaluation stage
scores a run: ``--images`` samples (``--sample-steps`` reverse steps of the paper's
sampler, temperature ``--temperature``) decoded by the autoencoder, Fréchet distance
against all training features and PRDC against an equal-sized subset, under the
primary extractor; and one validation ELBO estimator for all models (the full sum over
t = 1..T with the same masks for every model, in bits per token).

Results go to ``--out`` (one JSON per training run, and ``summary.md`` over every run
there). A run's JSON records the reference commit and every effective setting (the prior
and autoencoder entries after the overrides, the seed, the scoring), and is reused only
when its cache key matches: those settings, this project's training and evaluation code and
this file, and the reference commit: per arm and selection the FD of every seed, mean,
standard deviation, 95 % Student-t interval, std/mean, and Welch's one-sided tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- the reference model
class _DeviceRedirect:
    """``torch`` for the reference module: a ``device='cuda'`` argument goes to ``device``."""

    def __init__(self, torch_module, device: str):
        self._torch, self._device = torch_module, device

    def __getattr__(self, name):
        attr = getattr(self._torch, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, **kwargs):
            if str(kwargs.get("device", "")).startswith("cuda"):
                kwargs["device"] = self._device
            return attr(*args, **kwargs)

        return call


def _import_reference(src: Path):
    """The reference's models/ modules, imported without running its package __init__
    (which pulls in the VQGAN, lpips and its logging)."""
    import importlib

    import torch

    pkg = types.ModuleType("ut_reference_models")
    pkg.__path__ = [str(src / "models")]
    sys.modules["ut_reference_models"] = pkg
    absorbing = importlib.import_module("ut_reference_models.absorbing_diffusion")
    transformer = importlib.import_module("ut_reference_models.transformer")
    absorbing.torch = _DeviceRedirect(torch, "cpu")
    return absorbing, transformer


def reference_prior_class(src: Path):
    """A class with this project's prior interface around the reference's model."""
    import torch
    from torch import nn

    absorbing, transformer = _import_reference(src)

    def seeded(generator):
        """Run the reference's global-RNG draws from a seed taken off ``generator``."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.manual_seed(seed)
        return stack

    class ReferenceAbsorbing(nn.Module):
        def __init__(self, spec: dict, codebook_size: int, length: int, num_classes: int = 0):
            super().__init__()
            if num_classes:
                raise ValueError("the reference implementation has no class-conditional prior")
            side = int(math.isqrt(length))
            h = types.SimpleNamespace(
                codebook_size=codebook_size,
                emb_dim=1,
                latent_shape=[1, side, side],
                total_steps=length,
                batch_size=spec["batch_size"],
                n_samples=spec["batch_size"],
                loss_type=spec["loss_type"],
                mask_schedule=spec["mask_schedule"],
                bert_n_emb=spec["n_embd"],
                bert_n_head=spec["n_head"],
                bert_n_layers=spec["n_layer"],
                block_size=length,
                attn_pdrop=spec["dropout"],
                resid_pdrop=spec["dropout"],
                embd_pdrop=spec["dropout"],
                sampler="absorbing",
            )
            net = transformer.Transformer(h)
            self.model = absorbing.AbsorbingDiffusion(
                h, net, mask_id=codebook_size, embedding_weight=torch.zeros(codebook_size, 1)
            )
            self.mask_id, self.length, self.num_timesteps = codebook_size, length, length

        def denoise(self, z):
            return self.model._denoise_fn(z)

        def loss(self, z0, generator=None):
            with seeded(generator):
                loss, vb = self.model._train_loss(z0)
            return loss, vb.detach()

        @torch.no_grad()
        def sample(self, n, steps, temperature=1.0, generator=None, device="cpu", **_):
            self.model.n_samples = n
            with seeded(generator), contextlib.redirect_stdout(io.StringIO()):
                return self.model.sample(temp=temperature, sample_steps=steps)

    return ReferenceAbsorbing


# ---------------------------------------------------------------- one training run
def full_sum_elbo(denoise, tokens, mask_id: int, seed: int, batch_size: int = 500) -> float:
    """Validation ELBO, bits per token: Σ_{t=1..T} (1/t) Σ_masked −log p(z_0 | z_t), with
    T = L and each token masked w.p. t/T; the masks come from ``seed`` alone, so every
    model is scored on the same corrupted grids."""
    import torch
    import torch.nn.functional as F

    n, length = tokens.shape
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for t in range(1, length + 1):
            u = torch.rand(tokens.shape, generator=gen)
            for start in range(0, n, batch_size):
                z0 = tokens[start : start + batch_size]
                mask = u[start : start + batch_size] < t / length
                zt = torch.where(mask, torch.full_like(z0, mask_id), z0)
                nll = F.cross_entropy(denoise(zt).float().transpose(1, 2), z0, reduction="none")
                total += float((nll * mask).sum()) / t
    return total / (n * length * math.log(2))


def keep_both_selections(selections: dict):
    """An ``on_evaluation`` hook for the trainer that keeps, beside the trainer's own choice,
    the weights with the best validation bound and those with the best sample FD."""
    from twostage.train.common import BestCheckpoint

    selections["val_bound"] = BestCheckpoint()

    def keep(step, model, row):
        selections["val_bound"].update(row["val_bits"], step, model)
        if "val_sample_fd" in row:
            selections.setdefault("sample_fd", BestCheckpoint())
            selections["sample_fd"].update(row["val_sample_fd"], step, model)

    return keep


def _scratch_project(project: Path, scratch: Path, overrides: dict) -> None:
    """A working directory that sees the project's params and cached inputs, and writes
    the trained prior into its own results/."""
    scratch.mkdir(parents=True, exist_ok=True)
    for sub in ("params",):
        link = scratch / sub
        if not os.path.lexists(link):  # a dangling link is there too
            link.symlink_to(project / sub)
    (scratch / "results").mkdir(exist_ok=True)
    for sub in ("data", "latents", "autoencoders", "features", "extractors"):
        link = scratch / "results" / sub
        if not os.path.lexists(link):  # a dangling link is there too
            link.symlink_to(project / "results" / sub)
    (scratch / "profile.yaml").write_text(json.dumps(overrides))


def run_one(job: dict) -> dict:
    """Train one (arm, seed), then score its kept checkpoints; runs in a worker process."""
    import torch

    torch.set_num_threads(job["threads"])
    os.environ["TWOSTAGE_THREADS"] = str(job["threads"])
    from twostage import paths
    from twostage.config import load_params
    from twostage.data.latents import load_tokens
    from twostage.evaluate import cache, extractors
    from twostage.evaluate.protocol import score
    from twostage.images import to_uint8
    from twostage.models.autoencoders import load_autoencoder
    from twostage.models.priors import build_prior
    from twostage.train.sample_quality import sampling_options
    from twostage.train.token_prior import train_token_prior, validation_bound

    project, scratch = Path(job["project"]), Path(job["scratch"])
    _scratch_project(project, scratch, job["profile"])
    os.chdir(scratch)
    p = load_params(["profile.yaml"])
    name = job["prior"]
    spec = p.prior(name)
    build = build_prior
    if job["arm"] == "reference":
        build = reference_prior_class(Path(job["reference_src"]))
    kept: dict = {}
    start = time.perf_counter()
    metrics = train_token_prior(p, name, build=build, on_evaluation=keep_both_selections(kept))
    train_s = time.perf_counter() - start

    device = torch.device("cpu")
    ae_name = spec["autoencoder"]
    ae = load_autoencoder(paths.autoencoder(ae_name)["model"], device, p.autoencoder(ae_name))
    dataset = p.dataset_of_autoencoder(ae_name)
    ext_name = p["evaluation"]["extractor"]
    extractor = extractors.build(p, ext_name, dataset, device)
    real = cache.load_train_features(p, dataset, extractor)
    val_tokens = load_tokens(ae_name, "val")
    codebook, length = p.autoencoder(ae_name)["codebook_size"], val_tokens.shape[1]

    selections = {key: (best.step, best.weights) for key, best in kept.items()}
    out = {**{k: job[k] for k in ("arm", "seed", "prior")}, "train_s": train_s}
    out["train_metrics"] = metrics
    for selection, (step, weights) in selections.items():
        model = build(spec, codebook, length)
        model.load_state_dict(weights)
        model.eval()
        denoise = model.denoise if job["arm"] == "reference" else model.denoiser
        gen = torch.Generator().manual_seed(job["sample_seed"])
        images, t0 = [], time.perf_counter()
        opts = sampling_options(model, spec)
        if spec["kind"] == "absorbing":
            opts["steps"] = job["sample_steps"]
        with torch.no_grad():
            for s in range(0, job["images"], 500):
                b = min(500, job["images"] - s)
                z = model.sample(b, temperature=job["temperature"], generator=gen, **opts)
                images.append(to_uint8(ae.decode(z.view(b, ae.token_side, -1)).float()))
        sample_s = time.perf_counter() - t0
        images = np.concatenate(images)
        scores = score(extractor(images), real, ext_name, p["evaluation"]["nearest_k"], 0)
        scores.pop("protocol")
        if spec["kind"] == "absorbing":
            elbo = full_sum_elbo(denoise, val_tokens, codebook, seed=job["elbo_seed"])
        else:  # the autoregressive NLL is exact
            elbo = validation_bound(model, val_tokens, 1, device)
        out[selection] = {"step": step, **scores, "val_bits": elbo, "sample_s": sample_s}
    return out


# ---------------------------------------------------------------- what a cached run is
def reference_commit(src: Path) -> str:
    """The reference checkout's commit, or a hash of its model files if it is no checkout."""
    import subprocess

    proc = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return proc.stdout.strip()
    files = sorted((src / "models").glob("*.py"))
    return "files:" + _sha256(b"".join(f.read_bytes() for f in files))


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def effective_settings(project: Path, job: dict) -> dict:
    """Every setting the run uses: the prior entry after the override profile (defaults
    filled), its autoencoder's, the seed, and how the kept models are scored."""
    from twostage.config import load_params

    scratch = Path(job["scratch"])
    _scratch_project(project, scratch, job["profile"])
    p = load_params(["profile.yaml"], root=scratch)
    spec = p.prior(job["prior"])
    scoring = ("images", "sample_steps", "temperature", "sample_seed", "elbo_seed", "threads")
    return {
        "prior": spec,
        "autoencoder": p.autoencoder(spec["autoencoder"]),
        "seed": p["seed"],
        "evaluation": p["evaluation"],
        **{k: job[k] for k in scoring},
    }


def cache_key(job: dict) -> str:
    """A result is reused only for the same effective settings, the same code (this
    project's training and evaluation code and this file) and the same reference commit."""
    from twostage.config import load_params
    from twostage.provenance import versions

    p = load_params(["profile.yaml"], root=Path(job["scratch"]))
    code = versions.code_hashes(p)[f"train_prior-{job['prior']}"]
    evaluate = sorted((Path(versions.__file__).parent / "evaluate").glob("*.py"))
    own = [Path(__file__), *evaluate]
    text = json.dumps(
        {
            "settings": job["effective"],
            "arm": job["arm"],
            "train_code": code,
            "scoring_code": _sha256(b"".join(f.read_bytes() for f in own)),
            "reference": job["reference_commit"] if job["arm"] == "reference" else None,
        },
        sort_keys=True,
        default=str,
    )
    return _sha256(text.encode())


def reusable(job: dict) -> bool:
    """Whether the run's JSON in ``--out`` was made with this job's cache key."""
    f = Path(job["file"])
    return f.is_file() and json.loads(f.read_text()).get("cache_key") == job["key"]


# ---------------------------------------------------------------- statistics
def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample standard deviation, half-width of the 95 % Student-t interval)."""
    from twostage.report.replicates import t_half_width

    x = np.asarray(values, dtype=float)
    sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    return float(x.mean()), sd, t_half_width(x)


def welch_not_worse(ours: list[float], ref: list[float]) -> float:
    """One-sided Welch p-value of "our mean FD is lower than the reference's"."""
    from scipy import stats

    return float(stats.ttest_ind(ours, ref, equal_var=False, alternative="less").pvalue)


def paired_ratio(results: list[dict], a: tuple[str, str], b: tuple[str, str], key: str):
    """(seeds, mean, low, high) of the per-seed ratio a / b over the seeds both arms ran, with
    its 95 % Student-t interval (the claims table's estimator), or None below two seeds."""
    from twostage.report.verdict import interval as t_interval
    from twostage.report.verdict import per_seed

    by_seed = [
        {r["seed"]: r[sel][key] for r in results if r["arm"] == arm and sel in r}
        for arm, sel in (a, b)
    ]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    if len(seeds) < 2:
        return None
    ratios = per_seed([by_seed[0][s] for s in seeds], [by_seed[1][s] for s in seeds], "ratio")
    return (seeds, *t_interval(ratios))


def summarise(results: list[dict], key: str) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        for selection in ("val_bound", "sample_fd"):
            if selection in r:
                groups.setdefault((r["arm"], selection), []).append(r)
    lines = [
        f"| arm | selected by | seeds | {key} by seed | mean ± 95 % | std/mean | precision |"
        " recall | density | coverage | val ELBO bits/token | train s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (arm, selection), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        fd = [r[selection][key] for r in rs]
        mean, sd, half = interval(fd)
        cols = [
            interval([r[selection][m] for r in rs])[0]
            for m in ("precision", "recall", "density", "coverage", "val_bits")
        ]
        lines.append(
            f"| {arm} | {selection} | {', '.join(str(r['seed']) for r in rs)} | "
            f"{' / '.join(f'{v:.1f}' for v in fd)} | {mean:.1f} ± {half:.1f} | {sd / mean:.2f} | "
            + " | ".join(f"{c:.3f}" for c in cols)
            + f" | {np.mean([r['train_s'] for r in rs]):.0f} |"
        )

    def fds(arm: str, selection: str) -> list[float]:
        return [r[selection][key] for r in results if r["arm"] == arm and selection in r]

    # (ours, its selection) against (other arm, its selection): the same trainer for both
    # token arms; the reference ships without a sample-quality signal, and the
    # autoregressive prior keeps its exact-likelihood selection.
    pairs = [
        (("ours", "val_bound"), ("reference", "val_bound")),
        (("ours", "sample_fd"), ("reference", "sample_fd")),
        (("ours", "sample_fd"), ("reference", "val_bound")),
        (("ours", "sample_fd"), ("autoregressive", "val_bound")),
        (("ours", "val_bound"), ("autoregressive", "val_bound")),
        (("ours", "sample_fd"), ("autoregressive", "sample_fd")),
    ]
    tests = []
    for (arm, sel), (other, other_sel) in pairs:
        a, b = fds(arm, sel), fds(other, other_sel)
        if len(a) >= 2 and len(b) >= 2:
            tests.append(
                f"- {arm} ({sel}) / {other} ({other_sel}): mean {key} ratio "
                f"{np.mean(a) / np.mean(b):.2f}; Welch one-sided p({arm} lower) = "
                f"{welch_not_worse(a, b):.3f}"
            )
            paired = paired_ratio(results, (arm, sel), (other, other_sel), key)
            if paired:
                seeds, mean, low, high = paired
                tests[-1] += (
                    f"; paired by seed ({len(seeds)} seeds): ratio {mean:.2f} "
                    f"[{low:.2f}, {high:.2f}] (95 % Student-t)"
                )
    return "\n".join(lines + [""] + tests)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-src", type=Path, required=True)
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--prior", default="absorbing_mnist")
    parser.add_argument("--ar-prior", default="autoregressive_mnist")
    parser.add_argument("--seeds", default="100-104")
    parser.add_argument("--arms", default="ours,reference")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--sample-steps", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="prior key=value override for the absorbing arms (YAML value), repeatable",
    )
    parser.add_argument(
        "--ar-set",
        action="append",
        default=[],
        help="prior key=value override for the autoregressive arm (YAML value), repeatable",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/reference_parity"))
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="train nothing: rewrite --out/summary.md from the run JSONs already there",
    )
    args = parser.parse_args()
    if args.summary_only:
        write_summary(args.out, {})
        return
    import yaml

    project = args.project.resolve()
    src = args.reference_src.resolve()
    if not (src / "models" / "absorbing_diffusion.py").is_file():
        sys.exit(f"--reference-src {src}: no models/absorbing_diffusion.py (not a checkout?)")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    ar_overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.ar_set)}
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed in parse_seeds(args.seeds):
        for arm in args.arms.split(","):
            prior = args.ar_prior if arm == "autoregressive" else args.prior
            changes = ar_overrides if arm == "autoregressive" else overrides
            profile = {"seed": seed, "checkpoint_every": 0, "priors": {prior: changes}}
            tag = f"{arm}-seed{seed}"
            jobs.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "prior": prior,
                    "project": str(project),
                    "reference_src": str(src),
                    "scratch": str(args.out.resolve() / "scratch" / tag),
                    "profile": profile,
                    "images": args.images,
                    "sample_steps": args.sample_steps,
                    "temperature": args.temperature,
                    "sample_seed": 10_000 + seed,
                    "elbo_seed": 1234,
                    "threads": 1,
                    "file": str(args.out / f"{tag}.json"),
                }
            )
    config = {k: v for k, v in vars(args).items() if k not in ("out",)}
    reference = reference_commit(src)
    todo = []
    for job in jobs:
        job["reference_commit"] = reference
        job["effective"] = effective_settings(project, job)
        job["key"] = cache_key(job)
        if not reusable(job):
            todo.append(job)
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs reused from {args.out}", file=sys.stderr)
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for result, job in zip(pool.imap(run_one, todo), todo, strict=True):
            result["job_profile"] = job["profile"]
            result["cache_key"] = job["key"]
            result["reference_commit"] = job["reference_commit"]
            result["effective_settings"] = job["effective"]
            Path(job["file"]).write_text(json.dumps(result, indent=1, default=str))
            print(f"done {job['arm']} seed {job['seed']}", file=sys.stderr)
    write_summary(args.out, config)


def write_summary(out: Path, config: dict) -> None:
    # Every run in --out, so that invocations over other arms or seeds add up.
    results = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    table = summarise(results, "fd_classifier")
    header = f"```\n{' '.join(sys.argv)}\n```\nconfig: {json.dumps(config, default=str)}\n"
    (out / "summary.md").write_text(header + "\n" + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
