"""The fault harness itself (harness.py): a kill is counted only when the job died of it,
and placed by the write point it landed on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from harness import SMOKE, normalised, run_job

from twostage.config import load_params
from twostage.provenance import versions


@pytest.fixture
def project(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def test_a_kill_the_job_finished_before_is_no_kill(project: Path):
    out = run_job(project, "validate", "", kill_at=1)  # validate writes nothing
    assert (out.killed, out.code, out.points) == (False, 0, [])


def test_a_kill_at_the_nth_write_point_lands_there_and_leaves_whole_files(project: Path):
    # `twostage dvc-yaml` writes two files: results/versions.yaml, then dvc.yaml.
    versions.current(load_params([SMOKE], root=project))  # code hashes once, not per child
    clean = run_job(project, "dvc_yaml", "")
    assert clean.code == 0 and not clean.killed
    written = {f: (project / f).read_bytes() for f in ("dvc.yaml", "results/versions.yaml")}
    assert [Path(f).name for f, _ in clean.points[-5:]] == ["dvc.yaml"] * 5
    places = []
    for k in range(1, len(clean.points) + 1):
        for f in written:
            (project / f).unlink(missing_ok=True)
        out = run_job(project, "dvc_yaml", "", kill_at=k)
        assert out.killed and out.points == clean.points[:k]
        places.append(out.place)
        for f, content in written.items():  # absent or whole
            assert not (project / f).exists() or (project / f).read_bytes() == content
    assert places[:5] == ["output mid-write"] * 3 + ["output renamed, unsummed", "after an output"]
    assert run_job(project, "dvc_yaml", "", kill_after=0.0).place == "before any write"


def test_results_are_compared_on_every_key_but_the_timing_ones(tmp_path: Path):
    def digest(**metrics) -> str:
        path = tmp_path / "stats.json"
        path.write_text(json.dumps({"n_samples": 4, **metrics}))
        return normalised(path)

    base = {"network_calls_per_sample": 8.0, "tokens_per_sample": 16, "samples_per_s": 3.0}
    assert digest(**base) == digest(**{**base, "samples_per_s": 9.0, "seconds_per_image": 1.0})
    assert digest(**base) != digest(**{**base, "network_calls_per_sample": 9.0})
    assert digest(**base) != digest(**{**base, "tokens_per_sample": 17})
    assert digest(**base) != digest(**base, versions={"code": "edited"})
