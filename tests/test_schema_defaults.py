"""Defaults live in params_schema.yaml: filled on load, per kind where they differ, and never
written again in the code as ``.get("<key>", <literal>)``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from twostage import config, plan
from twostage.config import load_params

SRC = Path(__file__).resolve().parents[1] / "src" / "twostage"

# `.get(key, literal)` on a dict that is not a params entry, though its key shares a
# params key's name: a training stage's metrics JSON has a "device", dvc.lock's outs a "path".
NOT_PARAMS = {("report/collect.py", "device"), ("artifacts.py", "path")}


def _schema_keys(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        found |= set(node.get("properties", {}))
        for value in node.values():
            _schema_keys(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_keys(value, found)
    return found


def _literal_defaults(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "setdefault")
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            try:
                ast.literal_eval(node.args[1])
            except ValueError:
                continue  # a default computed from other values (e.g. all reverse steps)
            yield node.lineno, node.args[0].value


def test_no_literal_default_for_a_schema_key_in_the_code():
    keys = _schema_keys(config._schema(), set())
    offenders = [
        f"{path.relative_to(SRC)}:{line}: .get({key!r}, <literal>)"
        for path in sorted(SRC.rglob("*.py"))
        for line, key in _literal_defaults(ast.parse(path.read_text()))
        if key in keys and (str(path.relative_to(SRC)), key) not in NOT_PARAMS
    ]
    assert not offenders, "give the default in params_schema.yaml instead:\n" + "\n".join(offenders)


def test_loaded_params_have_the_defaults_filled():
    p = load_params()
    ar, absorbing = p.prior("autoregressive_mnist"), p.prior("absorbing_mnist")
    # Keys params/priors.yaml leaves out of the autoregressive entry, filled from the schema.
    assert (ar["condition"], ar["skip_nonfinite_steps"]) == ("none", 0)
    assert "label_drop" not in ar  # only under condition: class
    assert ar["val_elbo_samples"] == 1  # the autoregressive kind's own default
    assert absorbing["select_by"] == "sample_fd"  # written in params/priors.yaml, kept
    ae = p.autoencoder("vq_mnist")
    assert (ae["quantizer"], ae["disc_ndf"], ae["diffaug"], ae["grad_clip"]) == (
        "nearest",
        64,
        [],
        0.0,
    )
    assert "gumbel" not in ae  # a nearest quantizer has no Gumbel settings
    assert p.run("absorbing_confidence")["choice_temperature"] == 4.5
    assert "choice_temperature" not in p.run("autoregressive")  # confidence sampler only
    assert p["distributed"] == {"nproc": 1, "backend": "auto"}
    # Replicates' copies and runs made from sweeps are filled too.
    assert p.run("autoregressive-seed1")["cpu_bf16"] is False
    assert p.run("absorbing_steps-s2-t0p8")["cpu_bf16"] is False


def test_rerun_triggers_see_only_what_the_files_set():
    """A default the schema fills is no param value Snakemake compares: adding one to the
    schema reruns nothing."""
    p = load_params()
    train = plan.job(p, "train_prior", "autoregressive_mnist")
    values = plan.param_values(p, train)["priors.autoregressive_mnist"]
    assert "skip_nonfinite_steps" not in values and values["lr"] == 0.001
    assert "skip_nonfinite_steps" in p.prior("autoregressive_mnist")


def test_per_kind_defaults_are_filled_for_their_kind_only():
    from twostage.config import with_defaults

    absorbing = with_defaults("priors", {"kind": "absorbing"})
    assert "val_elbo_samples" not in absorbing  # required for absorbing, never defaulted
    assert with_defaults("priors", {"kind": "autoregressive"})["val_elbo_samples"] == 1
    # so for a token kind added later (tests/test_new_kind.py)
    assert with_defaults("priors", {"kind": "unigram"})["val_elbo_samples"] == 1
    gumbel = with_defaults("autoencoders", {"kind": "vq", "quantizer": "gumbel"})
    assert gumbel["gumbel"] == {"tau_start": 1.0, "tau_end": 0.0625, "kl_weight": 1e-8}
    assert with_defaults("autoencoders", {"kind": "rae"})["decoder_reg"] == 0.0
    assert "decoder_reg" not in with_defaults("autoencoders", {"kind": "ae"})
    # A continuous prior gets the continuous schema's defaults, not the token prior's.
    assert "select_by" not in with_defaults("priors", {"kind": "glf"})


def test_filler_takes_the_valid_branch_of_oneof_and_leaves_written_values():
    from twostage.schema_defaults import fill_defaults

    schema = {
        "type": "object",
        "properties": {
            "x": {
                "oneOf": [
                    {"type": "object", "required": ["a"], "properties": {"b": {"default": 1}}},
                    {"type": "object", "required": ["c"], "properties": {"b": {"default": 2}}},
                ]
            },
            "y": {"type": "integer", "default": 5},
            "z": {"type": "integer", "default": 6},
        },
    }
    data = {"x": {"c": 0}, "z": 7}
    filled = fill_defaults(schema, data)
    assert data == {"x": {"c": 0, "b": 2}, "y": 5, "z": 7}
    assert sorted(filled) == [("x", "b"), ("y",)]


@pytest.mark.parametrize("table", ["autoencoders", "priors"])
def test_a_checkpoint_entry_from_before_a_default_matches_the_entry_in_force(table):
    """A checkpoint saved the entry as the files wrote it; filled, it equals the loaded entry,
    so check_spec accepts it."""
    from twostage.config import with_defaults

    p = load_params()
    name = "vq_mnist" if table == "autoencoders" else "autoregressive_mnist"
    written = p.written(f"{table}.{name}")
    assert written != p.data[table][name]
    assert with_defaults(table, written) == p.data[table][name]
