"""The experiment DAG as data: every job, its inputs, outputs and params keys.

One description serves three consumers: the Snakefile's input functions, the
``dvc.yaml`` generator (:func:`dvc_pipeline`) and the test that checks the
Snakemake DAG and the DVC pipeline name the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twostage import claims, paths, yamlio
from twostage.config import Params
from twostage.kinds import JOINT_PRIORS, KINDS
from twostage.lazy import resolve
from twostage.stages import STAGES
from twostage.stages import command as subcommand

# Params of a job: (file, dotted key) pairs. Only these trigger a rerun in DVC.
ParamKeys = list[tuple[str, str]]

GLOBAL_KEYS: ParamKeys = [("params/config.yaml", "seed"), ("params/config.yaml", "device")]


@dataclass
class Job:
    stage: str  # its name in stages.STAGES (or "report"): the Snakemake rule name
    name: str  # the artifact name it builds ("" for the report)
    deps: list[str]
    outs: list[str]
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    params: ParamKeys = field(default_factory=list)
    # DVC plot properties of a plot file beyond the default (x: step), e.g. its y and template
    plot_props: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def dvc_name(self) -> str:
        return f"{self.stage}-{self.name}" if self.name else self.stage


def extractor_names(p: Params) -> list[str]:
    """Every feature extractor the evaluation uses: the primary one first, each once."""
    ev = p["evaluation"]
    return list(dict.fromkeys([ev["extractor"], *ev["extra_extractors"]]))


def _weights_deps(p: Params, names: list[str]) -> list[str]:
    """Local weights files declared for ``names`` (pretrained extractors, ``lpips_alex``)."""
    weights = p["evaluation"]["weights"]
    return [weights[n] for n in names if n in weights]


def _feature_files(p: Params, dataset: str) -> list[str]:
    files = []
    for name in extractor_names(p):
        f = paths.features(dataset, name)
        files += [f["train"], f["val"], f["key"]]
    return files


def _extractor_deps(p: Params, dataset: str) -> list[str]:
    # The manifest: evaluation checks the cached features belong to this exact data.
    deps = [paths.classifier(dataset)["model"], *_feature_files(p, dataset)]
    deps.append(paths.data(dataset)["manifest"])
    return deps + _weights_deps(p, extractor_names(p))


def prepare_data_job(p: Params, ds: str) -> Job:
    spec = p.dataset(ds)
    out = paths.data(ds)
    deps = [spec["path"]] if spec["source"] in ("folder", "npz") else []
    return Job(
        "prepare_data",
        ds,
        deps=deps,
        outs=[out["train"], out["val"], out["manifest"]],
        params=[("params/datasets.yaml", f"datasets.{ds}")],
    )


def train_classifier_job(p: Params, ds: str) -> Job:
    data, out = paths.data(ds), paths.classifier(ds)
    return Job(
        "train_classifier",
        ds,
        deps=[data["train"], data["val"]],
        outs=[out["model"]],
        metrics=[out["metrics"]],
        params=[("params/evaluation.yaml", "evaluation.classifier"), *GLOBAL_KEYS],
    )


def extract_features_job(p: Params, ds: str) -> Job:
    """Real features of both splits under every configured extractor (shared by all runs)."""
    data = paths.data(ds)
    return Job(
        "extract_features",
        ds,
        deps=[
            data["train"],
            data["val"],
            data["manifest"],
            paths.classifier(ds)["model"],
            *_weights_deps(p, extractor_names(p)),
        ],
        outs=_feature_files(p, ds),
        params=[
            ("params/evaluation.yaml", "evaluation.extractor"),
            ("params/evaluation.yaml", "evaluation.extra_extractors"),
            ("params/evaluation.yaml", "evaluation.allow_download"),
            *GLOBAL_KEYS,
        ],
    )


def _perceptual_deps(p: Params, ae: str) -> list[str]:
    """The local VGG16 file of a perceptual loss (DVC-tracked), when training uses one."""
    spec = p.autoencoder(ae)
    weights = spec.get("perceptual_weights")
    return [weights] if weights and spec["perceptual_weight"] > 0 else []


def train_autoencoder_job(p: Params, ae: str) -> Job:
    data, out = paths.data(p.dataset_of_autoencoder(ae)), paths.autoencoder(ae)
    return Job(
        "train_autoencoder",
        ae,
        deps=[data["train"], data["val"], *_perceptual_deps(p, ae)],
        outs=[out["model"], out["recon"]],
        metrics=[out["metrics"]],
        plots=[out["curve"]],
        params=[("params/autoencoders.yaml", _entry_key(p, "autoencoders", ae)), *GLOBAL_KEYS],
    )


def encode_job(p: Params, ae: str) -> Job:
    data, lat = paths.data(p.dataset_of_autoencoder(ae)), paths.latents(ae)
    return Job(
        "encode",
        ae,
        deps=[data["train"], data["val"], paths.autoencoder(ae)["model"]],
        outs=[lat["train"], lat["val"]],
        params=[("params/config.yaml", "device")],
    )


def continuous_prior_deps(p: Params, prior: str) -> list[str]:
    """What a continuous prior's training reads besides the latents.

    glf and vae_flow train their own autoencoder from the images; vae_prior
    scores the VAE's ELBO on the validation images with the trained VAE.
    """
    kind, ae = p.prior(prior)["kind"], p.autoencoder_of_prior(prior)
    data = paths.data(p.dataset_of_autoencoder(ae))
    if kind in JOINT_PRIORS:
        return [data["train"], data["val"]]
    if KINDS[kind].scores_with_autoencoder:
        return [paths.autoencoder(ae)["model"], data["val"]]
    return []


def label_deps(p: Params, prior: str) -> list[str]:
    """A class-conditional prior reads its tokens' labels from the dataset's splits."""
    if p.prior(prior)["condition"] == "none":
        return []
    data = paths.data(p.dataset_of_autoencoder(p.autoencoder_of_prior(prior)))
    return [data["train"], data["val"]]


def glf_params(p: Params, prior: str) -> ParamKeys:
    """GLF and VAE+flow train their own autoencoder: that architecture's params key is an input."""
    if p.prior(prior)["kind"] not in JOINT_PRIORS:
        return []
    return [
        ("params/autoencoders.yaml", _entry_key(p, "autoencoders", p.autoencoder_of_prior(prior)))
    ]


def sample_fd_deps(p: Params, prior: str) -> tuple[list[str], ParamKeys]:
    """What a token prior's sample-quality validation (``sample_fd_images``) reads: its
    decoder, and the primary extractor's network and real training features."""
    spec = p.prior(prior)
    if not spec.get("sample_fd_images"):  # a continuous prior has no such key
        return [], []
    ae = spec["autoencoder"]
    dataset = p.dataset_of_autoencoder(ae)
    name = p["evaluation"]["extractor"]
    feats = paths.features(dataset, name)
    deps = [paths.autoencoder(ae)["model"], feats["train"], feats["key"]]
    deps += [paths.data(dataset)["manifest"], *_weights_deps(p, [name])]
    if name == "classifier":
        deps.append(paths.classifier(dataset)["model"])
    return deps, [("params/evaluation.yaml", "evaluation.extractor")]


def train_prior_job(p: Params, prior: str) -> Job:
    lat, out = paths.latents(p.autoencoder_of_prior(prior)), paths.prior(prior)
    fd_deps, fd_params = sample_fd_deps(p, prior)
    return Job(
        "train_prior",
        prior,
        deps=[
            lat["train"],
            lat["val"],
            *continuous_prior_deps(p, prior),
            *label_deps(p, prior),
            *fd_deps,
        ],
        outs=[out["model"]],
        metrics=[out["metrics"]],
        plots=[out["curve"]],
        params=[
            ("params/priors.yaml", _entry_key(p, "priors", prior)),
            *GLOBAL_KEYS,
            *glf_params(p, prior),
            *fd_params,
        ],
    )


def _entry_key(p: Params, table: str, name: str) -> str:
    """The params key of an entry: a replicate's is its original's (seeds.py), since only
    the original is in the file; the replicate's seed is in its name, hence its paths."""
    return f"{table}.{p.original(table, name)}"


def _run_params_key(p: Params, run: str) -> tuple[str, str]:
    """A sweep's runs are tracked by DVC through the sweep's key (the run has none in the file)."""
    run = p.original("runs", run)
    sweep = p.sweep_of.get(run)
    return ("params/evaluation.yaml", f"sweeps.{sweep}" if sweep else f"runs.{run}")


def is_conditional(p: Params, run: str) -> bool:
    """A run of a class-conditional prior (its samples carry the classes asked for)."""
    return p.prior(p.prior_of_run(run))["condition"] == "class"


def conditional_runs(p: Params) -> list[str]:
    """The runs whose sampling job also writes ``classes.npy`` (the Snakefile's
    ``sample_conditional`` rule)."""
    return [run for run in p.data["runs"] if is_conditional(p, run)]


def sample_job(p: Params, run: str) -> Job:
    prior = p.prior_of_run(run)
    out = paths.samples(run)
    return Job(
        "sample",
        run,
        deps=[
            paths.prior(prior)["model"],
            paths.autoencoder(p.autoencoder_of_prior(prior))["model"],
        ],
        outs=[out["images"], out["grid"], *([out["classes"]] if is_conditional(p, run) else [])],
        metrics=[out["stats"]],
        params=[
            _run_params_key(p, run),
            ("params/evaluation.yaml", "evaluation.n_samples"),
            *GLOBAL_KEYS,
        ],
    )


def _editing_job(p: Params, stage: str, prior: str, section: str, out: dict[str, str]) -> Job:
    ae = p.autoencoder_of_prior(prior)
    deps = [paths.prior(prior)["model"], paths.autoencoder(ae)["model"]]
    if stage == "inpaint":
        deps.append(paths.data(p.dataset_of_autoencoder(ae))["val"])
        mask_image = p["evaluation"]["inpainting"].get("mask_image")
        deps += [mask_image] if mask_image else []
    return Job(
        stage,
        prior,
        deps=deps,
        outs=[out["grid"]],
        metrics=[out["stats"]],
        params=[("params/evaluation.yaml", f"evaluation.{section}"), *GLOBAL_KEYS],
    )


def inpaint_job(p: Params, prior: str) -> Job:
    return _editing_job(p, "inpaint", prior, "inpainting", paths.inpainting(prior))


def large_samples_job(p: Params, prior: str) -> Job:
    return _editing_job(p, "large_samples", prior, "large_samples", paths.large_samples(prior))


def editing_priors(p: Params) -> list[str]:
    """The target priors whose kind ``edits``: they also get inpainting and large samples."""
    return [pr for pr in p.target_priors() if KINDS[p.prior(pr)["kind"]].edits]


def _eval_keys() -> ParamKeys:
    return [
        ("params/evaluation.yaml", "evaluation.extractor"),
        ("params/evaluation.yaml", "evaluation.n_samples"),
        ("params/evaluation.yaml", "evaluation.nearest_k"),
        *GLOBAL_KEYS,
    ]


def _class_deps(p: Params, run: str, dataset: str) -> list[str]:
    """A conditional run is also scored against the classes asked for and the real labels."""
    if not is_conditional(p, run):
        return []
    return [paths.samples(run)["classes"], paths.data(dataset)["train"]]


def evaluate_job(p: Params, run: str) -> Job:
    ds = p.dataset_of_autoencoder(p.autoencoder_of_prior(p.prior_of_run(run)))
    return Job(
        "evaluate",
        run,
        deps=[paths.samples(run)["images"], *_extractor_deps(p, ds), *_class_deps(p, run, ds)],
        outs=[],
        metrics=[paths.evaluation(run)["metrics"]],
        params=_eval_keys(),
    )


def neighbours_job(p: Params, run: str) -> Job:
    """Nearest training images of a run's samples (LPIPS, classifier features, pixels)."""
    ds = p.dataset_of_autoencoder(p.autoencoder_of_prior(p.prior_of_run(run)))
    data, out = paths.data(ds), paths.neighbours(run)
    return Job(
        "neighbours",
        run,
        deps=[
            paths.samples(run)["images"],
            data["train"],
            data["val"],
            paths.classifier(ds)["model"],
            *_weights_deps(p, ["lpips_alex"]),
        ],
        outs=[out["grid"], out["histogram"], out["flagged"]],
        metrics=[out["metrics"]],
        params=[
            ("params/evaluation.yaml", "evaluation.neighbours"),
            ("params/evaluation.yaml", "evaluation.weights"),
            *GLOBAL_KEYS,
        ],
    )


def calibrate_job(p: Params, ae: str) -> Job:
    ds = p.dataset_of_autoencoder(ae)
    data, out = paths.data(ds), paths.calibration(ae)
    return Job(
        "calibrate",
        ae,
        deps=[data["val"], paths.autoencoder(ae)["model"], *_extractor_deps(p, ds)],
        outs=[out["grid"]],
        metrics=[out["metrics"]],
        params=_eval_keys(),
    )


def evaluate_reconstruction_job(p: Params, ae: str) -> Job:
    """Reconstruction metrics, and the stage-1 ceiling row scored like the calibration rows."""
    ds = p.dataset_of_autoencoder(ae)
    out = paths.reconstruction(ae)
    primary = p["evaluation"]["extractor"]
    extractor = paths.features(ds, primary)
    weights = p.autoencoder(ae).get("perceptual_weights")  # LPIPS backbone, when named
    return Job(
        "evaluate_reconstruction",
        ae,
        # Each file once: the LPIPS backbone can be the primary extractor's weights file.
        deps=list(
            dict.fromkeys(
                [
                    paths.data(ds)["val"],
                    paths.autoencoder(ae)["model"],
                    paths.classifier(ds)["model"],
                    extractor["val"],
                    # The ceiling's real reference, checked against the dataset's manifest.
                    extractor["train"],
                    extractor["key"],
                    paths.data(ds)["manifest"],
                    *_weights_deps(p, [primary]),
                    *([weights] if weights else []),
                ]
            )
        ),
        outs=[out["usage"], out["grid"]],
        metrics=[out["metrics"]],
        params=[("params/autoencoders.yaml", f"autoencoders.{ae}"), *_eval_keys()],
    )


def report_inputs(p: Params) -> list[str]:
    """Every artifact the report reads, for the targets in config.yaml."""
    files: list[str] = []
    for ae in p.target_autoencoders():
        a = paths.autoencoder(ae)
        files += [a["metrics"], a["recon"], a["curve"], *paths.calibration(ae).values()]
        files.append(paths.data(p.dataset_of_autoencoder(ae))["manifest"])
        files.append(paths.classifier(p.dataset_of_autoencoder(ae))["metrics"])
        files += paths.reconstruction(ae).values()
    for prior in p.target_priors():
        files += [paths.prior(prior)["metrics"], paths.prior(prior)["curve"]]
    for run in p["targets"]:
        s = paths.samples(run)
        files += [s["grid"], s["stats"], paths.evaluation(run)["metrics"]]
        files += list(paths.neighbours(run).values())
    # Replicates are aggregated from their scores (report/replicates.py).
    files += [paths.evaluation(run)["metrics"] for run in p.target_replicas("runs")]
    for prior in editing_priors(p):
        files += [*paths.inpainting(prior).values(), *paths.large_samples(prior).values()]
    files += claim_inputs(p)
    return list(dict.fromkeys(files))  # each once: a claim reads what the runs table reads


def claim_inputs(p: Params) -> list[str]:
    """What the claims table reads at each held-out seed of each claim's runs (report/claims.py):
    the replicate's evaluation, its samples' stats and its prior's metrics, each once."""
    files: list[str] = []
    for claim in p.data["claims"].values():
        for replicas in claims.replicates_at_seeds(p, claim).values():
            for run, _ in replicas:
                files += [paths.evaluation(run)["metrics"], paths.samples(run)["stats"]]
                files.append(paths.prior(p.prior_of_run(run))["metrics"])
    return list(dict.fromkeys(files))


def report_job(p: Params) -> Job:
    out = paths.report()
    return Job(
        "report",
        "",
        deps=report_inputs(p),
        outs=[out["html"], out["markdown"], out["table"]],
        plots=[out["fd_vs_steps"]],
        params=[("params/config.yaml", "targets"), ("params/evaluation.yaml", "claims")],
        plot_props={
            out["fd_vs_steps"]: {
                "x": "steps",
                "y": f"fd_{p['evaluation']['extractor']}",
                "template": "scatter",
            }
        },
    )


def jobs(p: Params) -> list[Job]:
    """All jobs needed for the targets, upstream first, each exactly once."""
    out: list[Job] = []
    for ds in p.target_datasets():
        out += [prepare_data_job(p, ds), train_classifier_job(p, ds), extract_features_job(p, ds)]
    for ae in p.target_autoencoders():
        out += [train_autoencoder_job(p, ae), encode_job(p, ae), calibrate_job(p, ae)]
        out.append(evaluate_reconstruction_job(p, ae))
    # Replicates (seeds.py) are trained and sampled like their originals; the inpainting,
    # large samples, calibration and neighbours of the original stand for all of them.
    for ae in p.target_replicas("autoencoders"):
        out += [train_autoencoder_job(p, ae), encode_job(p, ae)]
    out += [train_prior_job(p, pr) for pr in p.target_priors()]
    out += [train_prior_job(p, pr) for pr in p.target_replicas("priors")]
    for prior in editing_priors(p):
        out += [inpaint_job(p, prior), large_samples_job(p, prior)]
    for run in p["targets"]:
        out += [sample_job(p, run), evaluate_job(p, run), neighbours_job(p, run)]
    for run in p.target_replicas("runs"):
        out += [sample_job(p, run), evaluate_job(p, run)]
    out.append(report_job(p))
    return out


def downstream_counts(p: Params) -> dict[tuple[str, str], int]:
    """(stage, name) → how many jobs depend on that job's outputs, directly or not.

    The Snakefile makes it every job's priority, so a run with few cores starts the jobs
    that unlock the most work first: the VQ autoencoder, whose chain through the token
    priors is the longest, before the small continuous models whose chains are short.
    """
    every = jobs(p)
    producer = {f: (j.stage, j.name) for j in every for f in (*j.outs, *j.metrics, *j.plots)}
    children: dict[tuple[str, str], set] = {(j.stage, j.name): set() for j in every}
    for j in every:
        for dep in j.deps:
            if dep in producer:
                children[producer[dep]].add((j.stage, j.name))
    below: dict[tuple[str, str], set] = {}

    def descendants(key: tuple[str, str]) -> set:
        if key not in below:
            below[key] = set().union(*({c} | descendants(c) for c in children[key]))
        return below[key]

    return {key: len(descendants(key)) for key in children}


# The stage table (stages.py) names each stage's job builder by this role.
RESOLVES = ("Stage.job",)  # for codedeps.py


def job(p: Params, stage: str, name: str) -> Job:
    """The one job of ``stage`` building ``name`` (used by the Snakefile's input functions)."""
    if stage == "report":
        return report_job(p)
    return resolve(STAGES[stage].job)(p, name)


def producer(p: Params, file: str) -> Job | None:
    """The job that writes ``file``: among the targets' jobs first, then any params entry's."""
    wanted = os.path.normpath(file)

    def writes(j: Job) -> bool:
        return wanted in {os.path.normpath(f) for f in (*j.outs, *j.metrics, *j.plots)}

    for j in jobs(p):
        if writes(j):
            return j
    for stage, spec in STAGES.items():
        for name in p[spec.table]:
            try:
                j = job(p, stage, name)
            except (KeyError, ValueError):  # an entry these params cannot build
                continue
            if writes(j):
                return j
    return None


def param_values(p: Params, job: Job) -> dict[str, Any]:
    """The params values ``job`` reads, for Snakemake's rerun trigger.

    A sweep's run is tracked by its own resolved settings (``runs.<run>``), so
    adding a temperature to a sweep reruns nothing that already exists; DVC can
    only track the sweep's key in the file, and reruns the whole sweep.
    """
    values = {}
    for _, key in job.params:
        if key.startswith("sweeps."):
            key = f"runs.{job.name}"
        values[key] = p.written(key)
    return values


def command(job: Job, profiles: list[str]) -> str:
    """The CLI call both Snakemake and DVC run for ``job``."""
    profile_args = "".join(f" --profile {f}" for f in profiles)
    name = f" {job.name}" if job.name else ""
    return f"twostage{profile_args} {subcommand(job.stage)}{name}"


def _has_key(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def dvc_pipeline(p: Params, profiles: list[str], root: str | Path = ".") -> dict[str, Any]:
    """The ``dvc.yaml`` content for the targets of ``p`` under ``profiles``."""
    # A profile overrides some keys, so a job also depends on the profile's copy
    # of its keys, but DVC rejects a key missing from a file: list only present ones.
    # DVC hashes files by their bytes: a job's code is the source files it runs (and its
    # upstream jobs run), listed as deps, so `dvc status` sees a code edit on its own.
    from twostage.provenance.versions import code_files  # bookkeeping: no job's code

    profile_data = {f: yamlio.safe_load(Path(root, f).read_text()) or {} for f in profiles}
    stages: dict[str, Any] = {}
    plan = jobs(p)
    code = code_files(p, plan)
    for j in plan:
        params: dict[str, list[str]] = {}
        for file, key in j.params:
            params.setdefault(file, []).append(key)
            for prof, data in profile_data.items():
                if _has_key(data, key):
                    params.setdefault(prof, []).append(key)
        # The installed packages the job runs with (versions.py): what DVC cannot hash itself.
        # Their pins are a file it can: a package change made through them (a new venv,
        # scripts/ensure_venv.sh) is seen by `dvc status` alone, for every stage.
        params[paths.VERSIONS] = ["software"]
        deps = j.deps + code[j.dvc_name] + [paths.REQUIREMENTS]
        stage: dict[str, Any] = {"cmd": command(j, profiles), "deps": deps}
        stage["params"] = [{f: keys} for f, keys in params.items()]
        if j.outs:
            stage["outs"] = j.outs
        if j.metrics:
            stage["metrics"] = [{m: {"cache": False}} for m in j.metrics]
        if j.plots:
            # Training logs: loss against step (without y, DVC draws the last column, a
            # mostly empty validation one). Other plots name their axes in plot_props.
            stage["plots"] = [
                {c: {"x": "step", "y": "loss", "cache": False, **j.plot_props.get(c, {})}}
                for c in j.plots
            ]
        stages[j.dvc_name] = stage
    return {"stages": stages}
