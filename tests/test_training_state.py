"""A job's resumable training state outlives every write of the job: killed while its last
files are written, a trainer reruns from its last saved step, not from step one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from twostage import cli, paths
from twostage.artifacts import load_torch
from twostage.train.resume import ResumableState

PROFILE = "params/profiles/state-test.yaml"
TINY_PRIOR = (
    "checkpoint_every: 5\n"
    "priors:\n"
    "  autoregressive_mnist: {n_layer: 1, n_embd: 16, n_head: 2, steps: 12, eval_every: 6,"
    " warmup_steps: 2, batch_size: 16,"
    # the trainer options these tests were written for, not the default entry's
    " dropout: 0.0, ema_decay: 0.0, lr_schedule: constant, cpu_bf16: false,"
    " sample_fd_images: 0, select_by: val_bound}\n"
)
STATE = Path(paths.training_state("train_prior", "autoregressive_mnist"))
OUT = Path("results/priors/autoregressive_mnist")
TRAIN = ["--profile", PROFILE, "train-prior", "autoregressive_mnist"]


def test_a_kill_during_the_last_writes_resumes_from_the_last_saved_step(
    token_grid_project, monkeypatch
):
    (token_grid_project / PROFILE).write_text(TINY_PRIOR)

    # Die after the trainer wrote model, log and metrics, while the job records its hashes.
    class Killed(BaseException):
        pass

    def killed(*args):
        raise Killed

    record = cli._record_versions
    monkeypatch.setattr(cli, "_record_versions", killed)
    with pytest.raises(Killed):
        cli.main(TRAIN)
    assert (OUT / "model.pt").exists()
    assert load_torch(STATE)["step"] == 10  # the last state saved (every 5 steps, 12 steps)
    monkeypatch.setattr(cli, "_record_versions", record)
    shutil.rmtree(OUT)  # what Snakemake does before rerunning an incomplete job

    starts, saves = [], []
    restore = ResumableState.restore
    monkeypatch.setattr(
        ResumableState, "restore", lambda s: starts.append(restore(s)) or starts[-1]
    )
    monkeypatch.setattr(ResumableState, "save", lambda s, step, **o: saves.append(step))
    assert cli.main(TRAIN) == 0
    assert starts == [11] and saves == []  # steps 11 and 12 only, nothing saved again
    assert (OUT / "model.pt").exists() and not STATE.exists()  # done: no state left behind
