"""Bad input through the CLI: one line naming the file or key, exit status 2, nothing
already computed overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from twostage import cli
from twostage.artifacts import save_npz, save_torch
from twostage.config import load_params
from twostage.data.sources import DataError, load_folder
from twostage.models.autoencoders.vq import VQAutoencoder

FOLDER_DATASET = """\
datasets:
  shapes: {source: folder, path: data/shapes, resolution: 16, channels: 1,
           val_fraction: 0.25, split_seed: 0}
"""
PROFILE = "params/profiles/bad-input-test.yaml"


def _png(path: Path, value: int, size: int = 16, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).convert(mode).save(path)


@pytest.fixture
def project(tmp_path: Path, repo: Path, monkeypatch) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    (tmp_path / PROFILE).write_text(FOLDER_DATASET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fails(capsys, *args: str) -> str:
    """Run the CLI; it must exit 2 with exactly one error line (besides progress) and no
    traceback."""
    capsys.readouterr()  # drop what earlier calls printed
    assert cli.main(["--profile", PROFILE, *args]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("twostage: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_corrupt_image_fails_and_keeps_the_prepared_data(project: Path, capsys):
    for i in range(4):
        _png(project / "data/shapes/a" / f"{i}.png", 10 * i)
    assert cli.main(["--profile", PROFILE, "prepare-data", "shapes"]) == 0
    before = _snapshot(project / "results/data/shapes")
    (project / "data/shapes/a/zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    error = _fails(capsys, "prepare-data", "shapes")
    assert "data/shapes/a/zz_broken.png: unreadable or corrupt image" in error
    assert _snapshot(project / "results/data/shapes") == before


def test_empty_folder(project: Path, capsys):
    (project / "data/shapes").mkdir(parents=True)
    error = _fails(capsys, "prepare-data", "shapes")
    assert "data/shapes: no .png/.jpg images found" in error
    assert not (project / "results").exists()


def test_mixed_image_sizes_without_a_resize_rule(project: Path, capsys):
    _png(project / "data/shapes/a/big.png", 1, size=16)
    _png(project / "data/shapes/a/small.png", 1, size=12)
    error = _fails(capsys, "prepare-data", "shapes")
    assert "data/shapes/a/small.png: image is 12×12 but the dataset resolution is 16" in error
    assert not (project / "results").exists()


def test_rgb_and_grayscale_images_in_one_folder_are_converted(tmp_path: Path):
    # Mixed modes are not an error: every file is converted to the dataset's channels.
    _png(tmp_path / "a/gray.png", 50, mode="L")
    _png(tmp_path / "a/rgb.png", 50, mode="RGB")
    images, _ = load_folder(str(tmp_path), resolution=16, channels=3)
    assert images.shape == (2, 16, 16, 3) and np.array_equal(images[0], images[1])
    with pytest.raises(DataError, match=r"a/missing: not a directory"):
        load_folder(str(tmp_path / "a" / "missing"), resolution=16, channels=3)


def test_grayscale_autoencoder_on_rgb_data(project: Path, capsys):
    params = load_params()
    spec = params.autoencoder("vq_mnist")
    model = VQAutoencoder(spec, channels=1, resolution=32)
    save_torch(
        project / "results/autoencoders/vq_mnist/model.pt",
        {"spec": spec, "channels": 1, "resolution": 32, "state_dict": model.state_dict()},
    )
    rgb = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    for split in ("train", "val"):
        save_npz(project / f"results/data/mnist5k/{split}.npz", images=rgb, labels=np.arange(4))
    error = _fails(capsys, "encode", "vq_mnist")
    assert (
        "results/data/mnist5k/train.npz: images are 32×32 RGB but "
        "results/autoencoders/vq_mnist/model.pt was trained on 32×32 grayscale images"
    ) in error
    assert not (project / "results/latents").exists()


def _set(project: Path, file: str, table: str, name: str, key: str, value) -> None:
    path = project / "params" / file
    data = yaml.safe_load(path.read_text())
    data[table][name][key] = value
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("file", "table", "name", "key", "value", "expected"),
    [
        ("priors.yaml", "priors", "absorbing_mnist", "lr_typo", 1, "unknown key"),
        ("autoencoders.yaml", "autoencoders", "vq_mnist", "steps", "many", "'many' is invalid"),
        ("priors.yaml", "priors", "absorbing_mnist", "lr", -0.001, "-0.001 is invalid"),
        ("evaluation.yaml", "runs", "absorbing_confidence", "steps", 17, "exceed the 16 tokens"),
    ],
)
def test_invalid_params_stop_every_stage_before_it_starts(
    project: Path, capsys, file, table, name, key, value, expected
):
    _set(project, file, table, name, key, value)
    for stage in (["validate"], ["prepare-data", "mnist5k"], ["train-prior", "absorbing_mnist"]):
        error = _fails(capsys, *stage)
        assert f"params/{file}: {table}.{name}.{key}: " in error and expected in error
    assert not (project / "results").exists()
