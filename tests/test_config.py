"""Params validation: every user mistake gives one error naming the file and the key."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from twostage import yamlio
from twostage.config import ConfigError, load_params


@pytest.fixture
def params_root(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def _edit(root: Path, file: str, mutate) -> None:
    path = root / "params" / file
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_repository_params_and_smoke_profile_are_valid(repo: Path):
    base = load_params(root=repo)
    smoke = load_params(["params/profiles/smoke.yaml"], root=repo)
    sweeps = load_params(["params/profiles/sweeps.yaml"], root=repo)
    # The smoke run builds the runs and sweeps of the sweeps profile (with fewer steps in
    # its step sweep), which adds to the default set.
    assert set(base["targets"]) < set(sweeps["targets"])
    assert set(smoke["targets"]) <= set(sweeps["targets"])
    names = [{p.sweep_of.get(r, r) for r in p["targets"]} for p in (smoke, sweeps)]
    assert names[0] == names[1]
    # The profile overrides values and leaves the rest of the entry in place.
    assert smoke.autoencoder("vq_mnist")["steps"] < base.autoencoder("vq_mnist")["steps"]
    assert smoke.autoencoder("vq_mnist")["beta"] == base.autoencoder("vq_mnist")["beta"]


def test_paper_profile_compares_the_token_priors_at_64_tokens_with_equal_effort(repo: Path):
    paper = load_params(["params/profiles/paper.yaml"], root=repo)
    absorbing, autoregressive = (
        paper.prior(f"{k}_mnist_8x8") for k in ("absorbing", "autoregressive")
    )
    ae = paper.autoencoder(absorbing["autoencoder"])
    assert autoregressive["autoencoder"] == absorbing["autoencoder"]
    assert 32 // 2 ** (len(ae["ch_mult"]) - 1) == 8  # 8×8 = 64 tokens of the 32×32 digits
    # The same network, budget, schedule, averaging, precision and checkpoint selection.
    shared = ["n_layer", "n_head", "n_embd", "lr", "warmup_steps", "lr_schedule", "batch_size"]
    shared += ["steps", "eval_every", "ema_decay", "cpu_bf16", "sample_fd_images", "select_by"]
    assert {k: absorbing[k] for k in shared} == {k: autoregressive[k] for k in shared}
    # Every claim is tested on the same held-out seeds, none of which chose a setting.
    claims = paper["claims"]
    assert {c["seeds"] == [300, 301, 302] for c in claims.values()} == {True}
    assert not set(absorbing["chosen_on_seeds"] + autoregressive["chosen_on_seeds"]) & {
        300,
        301,
        302,
    }
    assert {name[0] for name in claims} == set("abcde")  # the paper's findings (a)-(e)


def test_the_fast_yaml_reader_reads_what_pyyaml_reads_and_fails_as_it_does(repo: Path):
    # libyaml's parser, when PyYAML has it: the same objects for every params file...
    for path in sorted(repo.glob("params/**/*.yaml")) + [repo / "dvc.yaml"]:
        text = path.read_text()
        assert yamlio.safe_load(text) == yaml.safe_load(text), path
    # ...and a document it rejects fails with the pure-Python loader's own error.
    bad = "a: 1\nb: [2\nc: 3\n"
    with pytest.raises(yaml.YAMLError) as ours:
        yamlio.safe_load(bad)
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.safe_load(bad)
    assert str(ours.value) == str(theirs.value)


def test_unknown_key_names_file_and_key(params_root: Path):
    _edit(params_root, "priors.yaml", lambda d: d["priors"]["absorbing_mnist"].update(lr_typo=1))
    with pytest.raises(ConfigError, match=r"params/priors\.yaml: priors\.absorbing_mnist\.lr_typo"):
        load_params(root=params_root)


def test_wrong_type_names_file_and_key(params_root: Path):
    _edit(
        params_root,
        "autoencoders.yaml",
        lambda d: d["autoencoders"]["vq_mnist"].update(steps="many"),
    )
    with pytest.raises(
        ConfigError, match=r"autoencoders\.yaml: autoencoders\.vq_mnist\.steps: 'many'"
    ):
        load_params(root=params_root)


def test_negative_learning_rate_is_rejected(params_root: Path):
    _edit(params_root, "priors.yaml", lambda d: d["priors"]["absorbing_mnist"].update(lr=-0.1))
    with pytest.raises(ConfigError, match=r"priors\.absorbing_mnist\.lr: -0\.1"):
        load_params(root=params_root)


def test_undefined_reference_is_named(params_root: Path):
    _edit(
        params_root,
        "priors.yaml",
        lambda d: d["priors"]["absorbing_mnist"].update(autoencoder="nope"),
    )
    with pytest.raises(
        ConfigError,
        match=r"priors\.absorbing_mnist\.autoencoder: refers to undefined autoencoder 'nope'",
    ):
        load_params(root=params_root)


def test_sampling_steps_cannot_exceed_tokens(params_root: Path):
    _edit(
        params_root, "evaluation.yaml", lambda d: d["runs"]["absorbing_confidence"].update(steps=17)
    )
    with pytest.raises(
        ConfigError,
        match=r"runs\.absorbing_confidence\.steps: 17 sampling steps exceed the 16 tokens",
    ):
        load_params(root=params_root)


def _grid_run(params_root: Path, **run) -> None:
    base = dict(sampler="random", steps=64, grid=8, stride=2)
    _edit(
        params_root,
        "evaluation.yaml",
        lambda d: d["runs"]["absorbing_confidence"].update({**base, **run}),
    )


def test_a_larger_grid_counts_its_steps_over_the_whole_grid(params_root: Path):
    _grid_run(params_root)  # 8 × 8 tokens of the 4 × 4 grid: 64 steps allowed, not 65
    run = load_params(root=params_root).run("absorbing_confidence")
    assert run["grid"] == 8 and run["stride"] == 2
    _grid_run(params_root, steps=65)
    with pytest.raises(ConfigError, match=r"steps: 65 sampling steps exceed the 64 tokens"):
        load_params(root=params_root)


@pytest.mark.parametrize(
    ("run", "says"),
    [
        ({"sampler": "confidence"}, r"grid: larger grids are sampled by windowed denoising"),
        ({"grid": 6}, r"grid: grid 6 must be a multiple of the 4×4 training grid"),
        ({"stride": 5}, r"stride 5 at most 4"),
        ({"grid": 12}, r"n_samples \(1000\) must be a multiple of 9"),
    ],
)
def test_a_larger_grid_that_cannot_be_sampled_or_scored_is_refused(params_root, run, says):
    _grid_run(params_root, **run)
    with pytest.raises(ConfigError, match=r"runs\.absorbing_confidence\.(grid|stride)?.*" + says):
        load_params(root=params_root)


def test_error_in_profile_names_the_profile(params_root: Path):
    profile = params_root / "params" / "profiles" / "bad.yaml"
    profile.write_text("priors:\n  absorbing_mnist:\n    n_layer: 0\n")
    with pytest.raises(
        ConfigError, match=r"params/profiles/bad\.yaml: priors\.absorbing_mnist\.n_layer"
    ):
        load_params(["params/profiles/bad.yaml"], root=params_root)


def test_undefined_target_run(params_root: Path):
    _edit(params_root, "config.yaml", lambda d: d.update(targets=["missing_run"]))
    with pytest.raises(
        ConfigError, match=r"config\.yaml: targets\.0: undefined run or sweep 'missing_run'"
    ):
        load_params(root=params_root)


def test_sweeps_expand_into_named_runs_and_targets(params_root: Path):
    params = load_params(root=params_root)
    assert "absorbing_steps-s2-t0p8" in params["runs"]
    run = params.run("absorbing_temperature-s16-t0p6")
    assert (run["steps"], run["temperature"], run["prior"]) == (16, 0.6, "absorbing_mnist")
    assert params.sweep_of["absorbing_temperature-s16-t1"] == "absorbing_temperature"
    assert "absorbing_steps" not in params["targets"]  # a sweep target becomes its runs
    assert {"absorbing_steps-s2-t0p8", "autoregressive"} <= set(params["targets"])


def test_continuous_sweeps_expand_over_temperature_only(params_root: Path):
    params = load_params(root=params_root)
    run = params.run("glf_temperature-t0p6")
    assert run == {
        "prior": "glf_mnist",
        "sampler": "ancestral",
        "batch_size": 500,
        "temperature": 0.6,
    }
    assert params.sweep_of["glf_temperature-t0p8"] == "glf_temperature"
    swept = load_params(["params/profiles/sweeps.yaml"], root=params_root)["targets"]
    assert {"glf_temperature-t0p6", "rae_gmm_temperature-t0p8"} <= set(swept)
    _edit(
        params_root, "evaluation.yaml", lambda d: d["sweeps"]["glf_temperature"].update(steps=[4])
    )
    with pytest.raises(ConfigError, match=r"sweeps\.glf_temperature\.steps: unknown key"):
        load_params(root=params_root)


def test_autoregressive_runs_must_take_one_step_per_token(params_root: Path):
    _edit(params_root, "evaluation.yaml", lambda d: d["runs"]["autoregressive"].update(steps=8))
    with pytest.raises(ConfigError, match=r"runs\.autoregressive\.steps: .*steps must be 16"):
        load_params(root=params_root)


def test_sampler_must_suit_the_prior(params_root: Path):
    _edit(
        params_root,
        "evaluation.yaml",
        lambda d: d["runs"]["absorbing_confidence"].update(sampler="autoregressive"),
    )
    with pytest.raises(ConfigError, match=r"runs\.absorbing_confidence\.sampler: prior"):
        load_params(root=params_root)


def test_absorbing_prior_needs_its_loss_type(params_root: Path):
    _edit(params_root, "priors.yaml", lambda d: d["priors"]["absorbing_mnist"].pop("loss_type"))
    with pytest.raises(ConfigError, match=r"priors\.absorbing_mnist: 'loss_type' is a required"):
        load_params(root=params_root)


def test_a_new_kind_is_one_entry_in_the_kind_table(params_root: Path, monkeypatch):
    """Validation, pairing and dispatch of a prior kind all come from kinds.KINDS."""
    from twostage import kinds
    from twostage.train import dispatch

    def use_new_kind(d):
        d["priors"]["absorbing_mnist"]["kind"] = "mask_predict"

    _edit(params_root, "priors.yaml", use_new_kind)
    with pytest.raises(ConfigError, match=r"priors\.absorbing_mnist\.kind: 'mask_predict'"):
        load_params(root=params_root)
    entry = kinds.PriorKind(
        model="twostage.models.priors.absorbing:AbsorbingDiffusion",
        trainer="twostage.train.token_prior:train_token_prior",
        continuous=False,
        samplers=kinds.TOKEN_SAMPLERS,
        bound="elbo",
        sits_on=("vq",),
    )
    monkeypatch.setitem(kinds.KINDS, "mask_predict", entry)
    p = load_params(root=params_root)
    assert p.prior("absorbing_mnist")["kind"] == "mask_predict"
    monkeypatch.setattr(dispatch, "resolve", lambda ref: lambda p, name: (ref, name))
    assert dispatch.train_prior(p, "absorbing_mnist") == (entry.trainer, "absorbing_mnist")
    # the pairing check reads the entry too
    monkeypatch.setitem(kinds.KINDS, "mask_predict", dataclasses.replace(entry, sits_on=("ae",)))
    with pytest.raises(ConfigError, match="a mask_predict prior needs an autoencoder of kind ae"):
        load_params(root=params_root)


def test_a_token_kinds_own_sampler_is_a_name_in_its_entry(params_root: Path, monkeypatch):
    """The schema's run samplers are the token kinds' ``samplers``: a new kind's sampler
    needs no schema edit."""
    from twostage import kinds

    def use_new_sampler(d):
        d["runs"]["autoregressive"]["sampler"] = "independent"

    _edit(params_root, "evaluation.yaml", use_new_sampler)
    with pytest.raises(ConfigError, match=r"runs\.autoregressive\.sampler: 'independent'"):
        load_params(root=params_root)
    entry = dataclasses.replace(kinds.KINDS["autoregressive"], samplers=("independent",))
    monkeypatch.setitem(kinds.KINDS, "autoregressive", entry)
    assert load_params(root=params_root).run("autoregressive")["sampler"] == "independent"
