"""A job that starts again removes the temporary files a kill left of its own outputs
and training state, and nothing else: not another job's (perhaps running) temporaries in
the same folder, not a whole artifact, not a file that only looks like a temporary."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest

from twostage import artifacts, cli, paths


@pytest.fixture
def project(tmp_path: Path, repo: Path, monkeypatch) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def killed_write(path: str, at: str = "written") -> None:
    """Write ``path`` in a forked child that SIGKILLs itself at the write point ``at``:
    the temporary file a real kill leaves."""
    moments = ["temp file made", "written"]
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            artifacts._points.clear()
            os.environ[artifacts.KILL_AT_ENV] = str(moments.index(at) + 1)
            artifacts.save_npy(path, np.arange(10))
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def killed_checksum_write(path: str) -> Path:
    """The temporary a kill inside the checksum write leaves (artifacts._write_synced's name)."""
    sidecar = artifacts.checksum_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{sidecar.name}.", suffix=".tmp", dir=sidecar.parent)
    os.close(fd)
    return Path(os.path.relpath(tmp))  # mkstemp answers with an absolute path


def files_at_start(monkeypatch, stage: str, name: str, folders: list[str]) -> set[str]:
    """Start ``twostage <stage> <name>`` and list ``folders`` as its stage code begins."""
    seen: set[str] = set()

    def stage_code(params, name):
        seen.update(str(f) for d in folders for f in Path(d).iterdir())

    monkeypatch.setattr(cli, "stage_function", lambda stage: stage_code)
    monkeypatch.setattr(cli, "_finish", lambda *args: None)
    assert cli.main([stage, name]) == 0
    return seen


def temporaries_of(path: str) -> set[str]:
    return {str(f) for f in artifacts.leftovers(path)}


def test_a_job_start_removes_its_own_kill_leftovers_only(project: Path, monkeypatch):
    # results/eval/<run>/ holds the outputs of two jobs: evaluate and neighbours.
    own, theirs = paths.neighbours("autoregressive"), paths.evaluation("autoregressive")
    folder = str(Path(own["metrics"]).parent)
    killed_write(own["metrics"])
    killed_write(own["grid"], at="temp file made")
    own_sidecar = killed_checksum_write(own["histogram"])
    killed_write(theirs["metrics"])  # evaluate's: it may be writing it right now
    unrelated = [f"{folder}/notes.tmp", f"{folder}/.memorization.json.keep"]
    unrelated += [f"{folder}/.memorization.json.a.b.tmp.json"]  # not atomic_path's name
    for f in unrelated:
        Path(f).write_text("mine")
    artifacts.save_npy(f"{folder}/kept.npy", np.arange(3))  # a whole artifact and its checksum
    left = temporaries_of(own["metrics"]) | temporaries_of(own["grid"]) | {str(own_sidecar)}
    others = temporaries_of(theirs["metrics"])
    assert len(left) == 3 and len(others) == 1
    seen = files_at_start(monkeypatch, "neighbours", "autoregressive", [folder])
    assert not seen & left, "the job started beside its own kill leftovers"
    assert others | set(unrelated) | {f"{folder}/kept.npy", f"{folder}/kept.npy.sha256"} <= seen


def test_a_trainer_start_removes_its_state_leftovers_only(project: Path, monkeypatch):
    own = paths.training_state("train_prior", "autoregressive_mnist")
    theirs = paths.training_state("train_prior", "absorbing_mnist")
    artifacts.save_npy(own, np.arange(3))  # the state a rerun resumes from stays
    killed_write(own)
    killed_write(theirs)
    left, others = temporaries_of(own), temporaries_of(theirs)
    assert len(left) == 1 and len(others) == 1
    folder = str(Path(own).parent)
    seen = files_at_start(monkeypatch, "train-prior", "autoregressive_mnist", [folder])
    assert not seen & left, "the trainer started beside its own kill leftovers"
    assert others | {own, own + ".sha256"} <= seen
