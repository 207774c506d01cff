"""Data sources and the deterministic split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twostage.data.prepare import split_indices
from twostage.data.sources import DataError, load_folder, load_mnist5k, load_npz


def _write_png(path: Path, value: int, size: int = 16, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).convert(mode).save(path)


def test_mnist5k_is_padded_real_digits():
    images, labels = load_mnist5k(resolution=32, channels=1)
    assert images.shape == (5000, 32, 32, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images[:, :2].max() == 0 and images[:, 2:30, 2:30].max() == 255  # 2-pixel zero border


def test_split_is_deterministic_and_disjoint():
    a_train, a_val = split_indices(100, 0.2, seed=3)
    b_train, b_val = split_indices(100, 0.2, seed=3)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    assert len(a_val) == 20 and not set(a_train) & set(a_val)
    assert set(a_train) | set(a_val) == set(range(100))
    assert not np.array_equal(split_indices(100, 0.2, seed=4)[1], a_val)


def test_folder_source_reads_recursively_with_class_labels(tmp_path: Path):
    _write_png(tmp_path / "cats" / "a.png", 10)
    _write_png(tmp_path / "cats" / "deep" / "b.png", 20)
    _write_png(tmp_path / "dogs" / "c.jpg", 30)
    images, labels = load_folder(str(tmp_path), resolution=16, channels=1)
    assert images.shape == (3, 16, 16, 1)
    assert labels.tolist() == [0, 0, 1]
    assert images[0].max() == 10 and images[1].max() == 20


def test_corrupt_image_error_names_the_file(tmp_path: Path):
    _write_png(tmp_path / "a" / "good.png", 10)
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"broken\.png: unreadable or corrupt image"):
        load_folder(str(tmp_path), resolution=16, channels=1)


def test_empty_folder_and_wrong_size_are_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no .png/.jpg images"):
        load_folder(str(tmp_path), resolution=16, channels=1)
    _write_png(tmp_path / "x" / "big.png", 1, size=20)
    with pytest.raises(DataError, match=r"big\.png: image is 20×20"):
        load_folder(str(tmp_path), resolution=16, channels=1)


def test_npz_source_pads_and_converts_channels(tmp_path: Path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.full((4, 28, 28), 7, dtype=np.uint8), labels=np.arange(4))
    images, labels = load_npz(str(path), resolution=32, channels=3)
    assert images.shape == (4, 32, 32, 3) and images[0, 2, 2, 0] == 7 and images[0, 0, 0, 0] == 0
    assert labels.tolist() == [0, 1, 2, 3]
    np.savez(path, pixels=np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="no array named 'images'"):
        load_npz(str(path), resolution=8, channels=1)
