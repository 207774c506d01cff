"""Load, merge and validate the params files.

The params live in several YAML files (``params/*.yaml``) plus optional profile
files deep-merged on top. Every stage and the Snakefile go through
:func:`load_params`, so a typo is caught once, before any job runs, with an
error that names the file and the key at fault.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from twostage import claims, seeds, yamlio
from twostage.kinds import (
    CONTINUOUS_AUTOENCODERS,
    CONTINUOUS_PRIORS,
    KINDS,
    SINGLE_PROCESS_KINDS,
    kinds_of,
)
from twostage.schema_defaults import fill_defaults

# The base files, in merge order. Profiles come after them.
BASE_PARAM_FILES = (
    "params/config.yaml",
    "params/datasets.yaml",
    "params/autoencoders.yaml",
    "params/priors.yaml",
    "params/evaluation.yaml",
)


class ConfigError(ValueError):
    """A user error in the params: the message names the file and the key."""


@dataclass
class Params:
    """The merged, validated params plus where each value came from."""

    data: dict[str, Any]
    files: list[str]
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)
    # Runs generated from a sweep → the sweep's name (DVC tracks the sweep's params key).
    sweep_of: dict[str, str] = field(default_factory=dict)
    # The seeded copies made from `replicates` (seeds.py), and each replicated run's replicates.
    replicas: seeds.Replicates = field(default_factory=seeds.Replicates)
    # The keys no file set, filled from the schema's defaults (``written`` leaves them out).
    defaulted: frozenset[tuple[str, ...]] = frozenset()

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def dataset(self, name: str) -> dict[str, Any]:
        return self.data["datasets"][name]

    def autoencoder(self, name: str) -> dict[str, Any]:
        return self.data["autoencoders"][name]

    def prior(self, name: str) -> dict[str, Any]:
        return self.data["priors"][name]

    def run(self, name: str) -> dict[str, Any]:
        return self.data["runs"][name]

    def written(self, dotted: str) -> Any:
        """The value at ``dotted`` (e.g. ``priors.absorbing``) as the files set it, without the
        schema's defaults: what the rerun triggers compare, so a default added to the schema
        reruns nothing."""
        path = tuple(dotted.split("."))
        node: Any = self.data
        for part in path:
            node = node[part]
        return _without(node, path, self.defaulted)

    def file_of(self, *path: str) -> str:
        """The params file that set ``path`` (e.g. ``"claims", name``), for error messages."""
        return _where(self.origin, path)

    # Walking the chain run → prior → autoencoder → dataset is needed by
    # almost every stage, so it lives here once.
    def dataset_of_autoencoder(self, ae: str) -> str:
        return self.autoencoder(ae)["dataset"]

    def autoencoder_of_prior(self, prior: str) -> str:
        return self.prior(prior)["autoencoder"]

    def prior_of_run(self, run: str) -> str:
        return self.run(run)["prior"]

    # Replicates (seeds.py): a copy's original entry and its seed; a plain entry is its own
    # original and runs with the global seed.
    def original(self, table: str, name: str) -> str:
        return self.replicas.copies.get(table, {}).get(name, (name, None))[0]

    def seed_of(self, table: str, name: str) -> int:
        return self.replicas.copies.get(table, {}).get(name, (name, self.data["seed"]))[1]

    def with_seed_of(self, table: str, name: str) -> Params:
        """These params with the seed of entry ``name`` as ``seed``: what a replicate's training
        or sampling stage reads, so the stages need not know about replicates."""
        return dataclasses.replace(self, data={**self.data, "seed": self.seed_of(table, name)})

    def replicates_of(self, run: str) -> list[tuple[str, int]]:
        """(run, seed) of every replicate of ``run``: just itself when it has none."""
        return self.replicas.of_run.get(run, [(run, self.data["seed"])])

    def target_replicas(self, table: str) -> list[str]:
        """The seeded copies in ``table`` that the targets' replicates use, each once."""
        runs = [r for run in self.data["targets"] for r, _ in self.replicates_of(run)]
        if table == "runs":
            used = runs
        elif table == "priors":
            used = [self.prior_of_run(r) for r in runs]
        else:
            used = [self.autoencoder_of_prior(self.prior_of_run(r)) for r in runs]
        return sorted({n for n in used if n in self.replicas.copies[table]})

    # What the targets need, upstream of the runs: each built once, in a stable order.
    def target_priors(self) -> list[str]:
        return sorted({self.prior_of_run(r) for r in self.data["targets"]})

    def target_autoencoders(self) -> list[str]:
        return sorted({self.autoencoder_of_prior(pr) for pr in self.target_priors()})

    def target_datasets(self) -> list[str]:
        return sorted({self.dataset_of_autoencoder(a) for a in self.target_autoencoders()})


@functools.cache
def _schema_file() -> dict[str, Any]:
    return yamlio.safe_load(resources.files("twostage").joinpath("params_schema.yaml").read_text())


def _schema() -> dict[str, Any]:
    schema = copy.deepcopy(_schema_file())
    # The kind names come from the kind table (kinds.py), not from the schema file: which
    # kinds an entry may have, and which of an entry's two schemas (token or continuous)
    # applies.
    for stage, table in (("autoencoder", "autoencoders"), ("prior", "priors")):
        token, continuous = kinds_of(stage, continuous=False), kinds_of(stage, continuous=True)
        schema["$defs"][stage]["properties"]["kind"] = {"enum": list(token)}
        schema["$defs"][f"continuous_{stage}"]["properties"]["kind"] = {"enum": list(continuous)}
        entries = schema["properties"][table]["additionalProperties"]
        entries["if"] = {"properties": {"kind": {"enum": list(continuous)}}}
    # So do a token run's samplers: those of the token prior kinds (kinds.PriorKind.samplers).
    schema["$defs"]["sampling"]["properties"]["sampler"] = {"enum": list(token_samplers())}
    return schema


def _either(names: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def token_samplers() -> tuple[str, ...]:
    """Every sampler a token prior's run may name, in kind-table order."""
    token_priors = kinds_of("prior", continuous=False)
    return tuple(dict.fromkeys(s for kind in token_priors for s in KINDS[kind].samplers))


def _without(value: Any, path: tuple[str, ...], defaulted: frozenset) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        k: _without(v, (*path, str(k)), defaulted)
        for k, v in value.items()
        if (*path, str(k)) not in defaulted
    }


def with_defaults(table: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``entry`` of ``table`` (e.g. a checkpoint's saved ``priors`` entry) with the
    schema's defaults filled in, as :func:`load_params` fills the entries in force."""
    schema = _schema()
    filled = {table: {"entry": copy.deepcopy(entry)}}
    fill_defaults(schema, filled)
    return filled[table]["entry"]


def _yaml_position(exc: yaml.YAMLError, text: str) -> str:
    """``:line:column`` of a parse error (the parser's own names the text "<unicode string>")."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f":{mark.line + 1}:{mark.column + 1}"
    if isinstance(exc, yaml.reader.ReaderError):  # a character no YAML file may hold
        before = text[: exc.position]
        return f":{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"
    return ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's words without its own positions."""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    words = ", ".join(part for part in parts if part)
    return words or str(exc).splitlines()[0]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    text = path.read_text(errors="replace")
    try:
        loaded = yamlio.safe_load(text)
    except yaml.YAMLError as exc:
        where = f"{path}{_yaml_position(exc, text)}"
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def _merge(
    base: dict, override: dict, source: str, origin: dict, prefix: tuple[str, ...] = ()
) -> None:
    """Deep-merge ``override`` into ``base`` in place, recording each leaf's file."""
    for key, value in override.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, origin, path)
        else:
            base[key] = copy.deepcopy(value)
            _record_origin(value, source, origin, path)


def _record_origin(value: Any, source: str, origin: dict, path: tuple[str, ...]) -> None:
    origin[path] = source
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_origin(sub, source, origin, (*path, str(key)))


def _where(origin: dict, path: tuple[str, ...]) -> str:
    """The file that set ``path`` (or its nearest ancestor that some file set)."""
    for end in range(len(path), 0, -1):
        if path[:end] in origin:
            return origin[path[:end]]
    return "params"


def _describe(error: jsonschema.ValidationError) -> tuple[tuple[str, ...], str]:
    path = tuple(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            allowed = ", ".join(sorted(error.schema.get("properties", {})))
            return (*path, extra[0]), f"unknown key (allowed: {allowed})"
    if error.validator == "required":
        return path, error.message
    return path, f"{error.instance!r} is invalid: {error.message}"


def validate(
    data: dict[str, Any], origin: dict[tuple[str, ...], str]
) -> tuple[dict[str, str], seeds.Replicates, frozenset[tuple[str, ...]]]:
    """Validate against the schema, expand sweeps into runs, check cross-references and
    claims, then add the replicates' seeded copies (checked as their originals are), with
    the seeds the claims are tested on.

    Returns the run → sweep map of the generated runs, what the replicates made, and the
    keys filled from the schema's defaults.
    """
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        # The deepest error is the most specific one; report just that, once.
        error = max(errors, key=lambda e: len(e.absolute_path))
        path, message = _describe(error)
        raise ConfigError(f"{_where(origin, path)}: {'.'.join(path) or '<top>'}: {message}")
    sweep_of = _expand_sweeps(data, origin)
    defaulted = set(fill_defaults(schema, data))
    _check_references(data, origin)
    _check_continuous(data, origin)
    _check_sampling(data, origin)
    _check_distributed(data, origin)

    def fail(path, msg):
        _fail(origin, path, msg)

    claims.check(data, fail)
    settings = claims.replicate_settings(data, sweep_of, fail)
    for name, claim in data["claims"].items():  # a claim's replicates are its file's
        for run in claims.runs_of(claim):
            origin.setdefault(("replicates", run), _where(origin, ("claims", name)))
    replicas = seeds.expand(data, origin, sweep_of, fail, settings)
    for table, copies in replicas.copies.items():  # a copy's defaults are its original's
        for copy_name, (original, _) in copies.items():
            defaulted |= {
                (table, copy_name, *path[2:])
                for path in set(defaulted)
                if path[:2] == (table, original)
            }
    return sweep_of, replicas, frozenset(defaulted)


def sweep_run_name(
    sweep: str, steps: int | None, temperature: float, guidance: float | None = None
) -> str:
    """``absorbing-s16-t0p8``: names allow no dots, so 0.8 is written 0p8.

    A sweep of a continuous prior (ancestral sampling, no steps) names ``<sweep>-t0p8``;
    a guidance sweep adds ``-g<guidance>`` (``-s16-t0p8-g0p5``).
    """
    temp = f"t{format(temperature, 'g').replace('.', 'p')}"
    name = f"{sweep}-{temp}" if steps is None else f"{sweep}-s{steps}-{temp}"
    return name if guidance is None else f"{name}-g{format(guidance, 'g').replace('.', 'p')}"


def _expand_sweeps(data: dict[str, Any], origin: dict) -> dict[str, str]:
    """Turn every sweep into plain runs (one per steps × temperature × guidance) and targets
    into runs."""
    sweep_of: dict[str, str] = {}
    for sweep, spec in data["sweeps"].items():
        if sweep in data["runs"]:
            _fail(origin, ("sweeps", sweep), "a run of the same name exists")
        # Ancestral sampling of a continuous prior has no steps: its sweeps are over temperature.
        axes = ("steps", "temperature", "guidance")
        steps_axis = [None] if spec["sampler"] == "ancestral" else spec["steps"]
        # guidance is an axis only of the sweeps that list it (conditional priors)
        guidance_axis = spec.get("guidance") or [None]
        for steps, temperature, guidance in itertools.product(
            steps_axis, spec["temperature"], guidance_axis
        ):
            name = sweep_run_name(sweep, steps, temperature, guidance)
            if name in data["runs"]:
                _fail(origin, ("sweeps", sweep), f"generated run {name!r} already exists")
            run = {k: v for k, v in spec.items() if k not in axes}
            if steps is not None:
                run["steps"] = steps
            if guidance is not None:
                run["guidance"] = guidance
            data["runs"][name] = {**run, "temperature": temperature}
            origin[("runs", name)] = _where(origin, ("sweeps", sweep))
            sweep_of[name] = sweep
    targets: list[str] = []
    for target in data["targets"]:
        expanded = [r for r, s in sweep_of.items() if s == target] or [target]
        targets += [r for r in expanded if r not in targets]
    data["targets"] = targets
    return sweep_of


def _fail(origin: dict, path: tuple[str, ...], message: str) -> None:
    raise ConfigError(f"{_where(origin, path)}: {'.'.join(path)}: {message}")


def _check_references(data: dict[str, Any], origin: dict) -> None:
    refs = [
        ("autoencoders", "dataset", "datasets"),
        ("priors", "autoencoder", "autoencoders"),
        ("runs", "prior", "priors"),
    ]
    for table, key, target in refs:
        for name, entry in data[table].items():
            if entry[key] not in data[target]:
                known = ", ".join(sorted(data[target])) or "none"
                _fail(
                    origin,
                    (table, name, key),
                    f"refers to undefined {target[:-1]} {entry[key]!r} (defined: {known})",
                )
    for i, run in enumerate(data["targets"]):
        if run not in data["runs"]:
            _fail(origin, ("targets", str(i)), f"undefined run or sweep {run!r}")
    for name, ds in data["datasets"].items():
        if ds["source"] in ("folder", "npz") and "path" not in ds:
            _fail(origin, ("datasets", name, "path"), f"source {ds['source']} needs a path")
    for name, ae in data["autoencoders"].items():
        if ae["kind"] in CONTINUOUS_AUTOENCODERS:
            continue  # checked by _check_continuous
        resolution = data["datasets"][ae["dataset"]]["resolution"]
        factor = 2 ** (len(ae["ch_mult"]) - 1)
        if resolution % factor:
            _fail(
                origin,
                ("autoencoders", name, "ch_mult"),
                f"{len(ae['ch_mult']) - 1} down-samplings do not divide resolution {resolution}",
            )
    for name, prior in data["priors"].items():
        if prior["kind"] in CONTINUOUS_PRIORS:
            continue
        if prior["n_embd"] % prior["n_head"]:
            _fail(origin, ("priors", name, "n_head"), "n_embd must be divisible by n_head")
        if prior["select_by"] == "sample_fd" and not prior["sample_fd_images"]:
            _fail(
                origin,
                ("priors", name, "select_by"),
                "sample_fd needs the sample it selects by: set sample_fd_images > 0",
            )
        steps = prior.get("sample_fd_steps")
        if steps is not None and steps > token_count(data, name):
            _fail(
                origin,
                ("priors", name, "sample_fd_steps"),
                f"{steps} reverse steps exceed the {token_count(data, name)} tokens per image",
            )


def _check_sampling(data: dict[str, Any], origin: dict) -> None:
    """Samplers must suit their prior's kind, and step counts its token grid."""
    for name, run in data["runs"].items():
        if run["sampler"] == "ancestral":
            continue  # continuous priors: checked by _check_continuous
        tokens = token_count(data, run["prior"])
        kind = data["priors"][run["prior"]]["kind"]
        if "grid" in run or "stride" in run:
            tokens = _check_grid(data, origin, name, run, kind)
        if run["steps"] > tokens:
            _fail(
                origin,
                ("runs", name, "steps"),
                f"{run['steps']} sampling steps exceed the {tokens} tokens of a latent grid",
            )
        facts = KINDS[kind]
        if run["sampler"] not in facts.samplers:
            _fail(
                origin,
                ("runs", name, "sampler"),
                f"prior {run['prior']!r} is {kind}: use sampler "
                f"{' or '.join(facts.samplers)}, got {run['sampler']!r}",
            )
        if facts.one_token_per_step and run["steps"] != tokens:
            _fail(
                origin,
                ("runs", name, "steps"),
                f"prior {run['prior']!r} ({kind}) samples one "
                f"token per step: steps must be {tokens}, got {run['steps']}",
            )
        if "top_k" in run and run["sampler"] != "autoregressive":
            _fail(origin, ("runs", name, "top_k"), "top_k applies to the autoregressive sampler")
        if data["priors"][run["prior"]]["condition"] == "none":
            # guidance 0 (the schema's default) is no guidance: only an asked-for one is wrong
            for key in ("guidance", "classes"):
                if run.get(key):
                    _fail(
                        origin,
                        ("runs", name, key),
                        f"applies to class-conditional priors; prior {run['prior']!r} has "
                        "no condition: class",
                    )
    ev = data["evaluation"]
    # Only autoencoders the targets use get inpainting and large samples: a reference
    # config (e.g. a 256² VQ-GAN with a 16×16 grid) may sit unused beside them.
    used = {data["priors"][data["runs"][run]["prior"]]["autoencoder"] for run in data["targets"]}
    for name, ae in data["autoencoders"].items():
        if name not in used or ae["kind"] in CONTINUOUS_AUTOENCODERS:
            continue  # unused reference configs; continuous latents have no grid to inpaint
        res = data["datasets"][ae["dataset"]]["resolution"]
        top, left, height, width = ev["inpainting"]["box"]
        if height == 0 or width == 0 or top + height > res or left + width > res:
            _fail(
                origin,
                ("evaluation", "inpainting", "box"),
                f"[{top}, {left}, {height}, "
                f"{width}] is empty or leaves the {res}×{res} images of autoencoder {name!r}",
            )
        side = res // 2 ** (len(ae["ch_mult"]) - 1)
        large = ev["large_samples"]
        if large["rows"] < side or large["cols"] < side:
            _fail(
                origin,
                ("evaluation", "large_samples"),
                f"a {large['rows']}×{large['cols']} "
                f"grid is smaller than the {side}×{side} token grid of autoencoder {name!r}",
            )
        if large["steps"] > large["rows"] * large["cols"]:
            _fail(origin, ("evaluation", "large_samples", "steps"), "more steps than tokens")


def _check_distributed(data: dict[str, Any], origin: dict) -> None:
    """Data-parallel training splits every global batch into equal slices, one per process."""
    nproc = data["distributed"]["nproc"]
    for table in ("autoencoders", "priors"):
        for name, entry in data[table].items():
            if entry.get("kind") in SINGLE_PROCESS_KINDS or "batch_size" not in entry:
                continue
            if entry["batch_size"] % nproc:
                _fail(
                    origin,
                    (table, name, "batch_size"),
                    f"{entry['batch_size']} is not divisible by distributed.nproc {nproc} "
                    "(each process trains on an equal slice of the batch)",
                )


def _check_continuous(data: dict[str, Any], origin: dict) -> None:
    """Continuous autoencoders, their priors and ancestral runs must fit together."""
    for name, ae in data["autoencoders"].items():
        if ae["kind"] not in CONTINUOUS_AUTOENCODERS:
            continue
        resolution = data["datasets"][ae["dataset"]]["resolution"]
        if resolution % 2 ** len(ae["channels"]):
            _fail(
                origin,
                ("autoencoders", name, "channels"),
                f"{len(ae['channels'])} stride-2 convolutions "
                f"do not divide resolution {resolution}",
            )
    for name, prior in data["priors"].items():
        ae_kind = data["autoencoders"][prior["autoencoder"]]["kind"]
        ok = KINDS[prior["kind"]].sits_on
        if ae_kind not in ok:
            _fail(
                origin,
                ("priors", name, "autoencoder"),
                f"a {prior['kind']} prior needs an autoencoder of kind "
                f"{' or '.join(ok)}, {prior['autoencoder']!r} is {ae_kind}",
            )
    for name, prior in data["priors"].items():
        if prior["condition"] != "none" and not KINDS[prior["kind"]].conditional:
            able = [k for k, facts in KINDS.items() if facts.stage == "prior" and facts.conditional]
            _fail(
                origin,
                ("priors", name, "condition"),
                f"a {prior['kind']} prior has no class-conditional form ({', '.join(able)} have)",
            )
    for name, run in data["runs"].items():
        kind = data["priors"][run["prior"]]["kind"]
        unconditional = data["priors"][run["prior"]]["condition"] == "none"
        if run["sampler"] == "ancestral" and "classes" in run and unconditional:
            _fail(
                origin,
                ("runs", name, "classes"),
                f"applies to class-conditional priors; prior {run['prior']!r} has "
                "no condition: class",
            )
        if (run["sampler"] == "ancestral") != (kind in CONTINUOUS_PRIORS):
            hint = (
                "sampler: ancestral (and no steps)"
                if kind in CONTINUOUS_PRIORS
                else f"a token sampler ({_either(token_samplers())})"
            )
            _fail(
                origin,
                ("runs", name, "sampler"),
                f"prior {run['prior']!r} is {kind}: use {hint}, got {run['sampler']!r}",
            )


def _check_grid(data: dict[str, Any], origin: dict, name: str, run: dict, kind: str) -> int:
    """A run on a token grid larger than training: a prior kind that edits, the random
    reverse process, whole tiles of the training grid, as many tiles as other runs' samples.
    Returns the tokens of the whole grid (what its steps count)."""
    side = math.isqrt(token_count(data, run["prior"]))
    grid, stride = run.get("grid"), run.get("stride")
    if grid is None or stride is None:
        _fail(origin, ("runs", name), "a larger grid needs both grid and stride")
    if not KINDS[kind].edits or run["sampler"] != "random":
        _fail(
            origin,
            ("runs", name, "grid"),
            f"larger grids are sampled by windowed denoising: an absorbing prior with sampler "
            f"random, got prior {run['prior']!r} ({kind}) with sampler {run['sampler']!r}",
        )
    if data["priors"][run["prior"]]["condition"] != "none":
        _fail(origin, ("runs", name, "grid"), "larger grids are for unconditional priors")
    if grid % side or stride > side:
        _fail(
            origin,
            ("runs", name, "grid"),
            f"grid {grid} must be a multiple of the {side}×{side} training grid of prior "
            f"{run['prior']!r}, and stride {stride} at most {side}",
        )
    tiles, n = (grid // side) ** 2, data["evaluation"]["n_samples"]
    if n % tiles:
        _fail(
            origin,
            ("runs", name, "grid"),
            f"each image holds {tiles} training-size tiles: evaluation.n_samples ({n}) must "
            f"be a multiple of {tiles}, so the run is scored on as many tiles as others on samples",
        )
    return grid * grid


def token_count(data: dict[str, Any], prior: str) -> int:
    """Number of latent tokens per image for the autoencoder under ``prior``."""
    ae = data["autoencoders"][data["priors"][prior]["autoencoder"]]
    side = data["datasets"][ae["dataset"]]["resolution"] // 2 ** (len(ae["ch_mult"]) - 1)
    return side * side


def load_params(profiles: list[str] | tuple[str, ...] = (), root: str | Path = ".") -> Params:
    """Merge the base params files and ``profiles`` (in order) and validate them."""
    root = Path(root)
    files = [*BASE_PARAM_FILES, *profiles]
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name in files:
        _merge(data, _read_yaml(root / name), str(name), origin)
    sweep_of, replicas, defaulted = validate(data, origin)
    return Params(
        data=data,
        files=[str(f) for f in files],
        origin=origin,
        sweep_of=sweep_of,
        replicas=replicas,
        defaulted=defaulted,
    )
