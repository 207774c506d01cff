"""Checkpoints: damaged files and checkpoints of other params are refused with a clear error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from twostage.artifacts import (
    ArtifactError,
    CheckpointError,
    checksum_path,
    load_torch,
    save_torch,
)
from twostage.config import with_defaults
from twostage.models.autoencoders import load_autoencoder
from twostage.models.autoencoders.vq import VQAutoencoder

SPEC = with_defaults(
    "autoencoders",
    dict(
        kind="vq",
        nf=8,
        ch_mult=[1, 2],
        res_blocks=0,
        attn_resolutions=[],
        codebook_size=8,
        emb_dim=4,
        beta=0.25,
    ),
)


def _save_autoencoder(path: Path) -> None:
    model = VQAutoencoder(SPEC, channels=1, resolution=8)
    save_torch(
        path, {"spec": SPEC, "channels": 1, "resolution": 8, "state_dict": model.state_dict()}
    )


def test_truncated_checkpoint_names_the_file(tmp_path: Path):
    path = tmp_path / "model.pt"
    _save_autoencoder(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # Its checksum, written with it, catches the cut before torch reads a byte.
    with pytest.raises(ArtifactError, match=r"model\.pt: content differs from the sha256"):
        load_torch(path)
    checksum_path(path).unlink()  # a file copied in without its checksum: torch's turn
    with pytest.raises(CheckpointError, match=r"model\.pt: cannot load checkpoint"):
        load_torch(path)


def test_checkpoint_of_other_params_is_refused(tmp_path: Path):
    path = tmp_path / "model.pt"
    _save_autoencoder(path)
    assert load_autoencoder(path, torch.device("cpu"), SPEC).token_side == 4
    with pytest.raises(CheckpointError, match=r"trained with other params \(differs in: nf\)"):
        load_autoencoder(path, torch.device("cpu"), {**SPEC, "nf": 16})


def test_checkpoints_cannot_run_code(tmp_path: Path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"spec": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_torch(path)


def test_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path: Path, repo: Path, tool_env: dict):
    (tmp_path / "params").symlink_to(repo / "params")
    ckpt = tmp_path / "results/autoencoders/vq_mnist/model.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    proc = subprocess.run(
        ["twostage", "encode", "vq_mnist"],
        cwd=tmp_path,
        env=tool_env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "results/autoencoders/vq_mnist/model.pt: cannot load checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_same_checkpoint_saves_to_the_same_bytes(tmp_path: Path):
    """Bit-identical reruns: nothing of the temporary file name gets into the archive."""
    first = tmp_path / "first.pt"
    save_torch(first, {"w": torch.arange(4.0)})
    second = tmp_path / "second" / "model.pt"
    save_torch(second, {"w": torch.arange(4.0)})
    assert first.read_bytes() == second.read_bytes()
