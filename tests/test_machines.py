"""Which CPU made the numbers: every job records it, and the report's header says it."""

from __future__ import annotations

import json

from twostage import runtime
from twostage.report import provenance


def test_cpu_description_names_the_model_and_the_bf16_kind(monkeypatch):
    monkeypatch.setenv("TWOSTAGE_CPU_BF16", "0")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    runtime.cpu_has_native_bf16.cache_clear()
    try:
        d = runtime.cpu_description()
    finally:
        runtime.cpu_has_native_bf16.cache_clear()
    assert d["cpu"] and d["native_bf16"] is False and d["onednn_max_cpu_isa"] == "AVX2"


def _metrics(path, cpu, native, bf16=None):
    data = {"versions": {"machine": {"cpu": cpu, "native_bf16": native}}}
    if bf16 is not None:
        data["cpu_bf16_used"] = bf16
    path.write_text(json.dumps(data))
    return str(path)


def test_header_names_the_cpu_and_the_bf16_trainings(tmp_path, monkeypatch):
    files = {
        "train_autoencoder vq": _metrics(tmp_path / "a.json", "EPYC X", True),
        "train_prior absorbing": _metrics(tmp_path / "b.json", "EPYC X", True, bf16=True),
        "train_prior autoregressive": _metrics(tmp_path / "c.json", "EPYC X", True, bf16=False),
    }
    monkeypatch.setattr(provenance, "_trainings", lambda p: files)
    assert provenance.machines(None) == (
        "Trained on EPYC X (with native bf16); bf16 autocast in absorbing."
    )
    # A job pulled from a build on another CPU: each CPU with its jobs.
    files["train_prior autoregressive"] = _metrics(tmp_path / "c.json", "Core Y", False)
    assert provenance.machines(None) == (
        "Trained on EPYC X (with native bf16): vq, absorbing; Core Y (without native bf16): "
        "autoregressive; bf16 autocast in absorbing."
    )
    monkeypatch.setattr(provenance, "_trainings", lambda p: {"x": str(tmp_path / "d.json")})
    (tmp_path / "d.json").write_text("{}")
    assert provenance.machines(None) == "Trained on: not recorded."
