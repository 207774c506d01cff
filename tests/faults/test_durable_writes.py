"""A writer SIGKILLed at any moment leaves its artifact absent or complete, never partial.

A subprocess rewrites a large array, a JSON file and an archive in a loop, each version
recognisable by its content; it is killed at seeded random moments, and each time every
target must be absent or one whole version that passes its checksum. The temporary
files a kill leaves behind are never at an artifact's name.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from twostage.artifacts import checksum_path, load_npy, load_npz, read_json, verify

KILLS = 40
SEED = 19
# 16 MB per version: a write takes long enough to be caught in the middle.
WRITER = """
import sys
import numpy as np
from twostage.artifacts import save_npy, save_npz, write_json

out = sys.argv[1]
print("ready", flush=True)
for version in range(10**6):
    save_npy(f"{out}/big.npy", np.full(4_000_000, version, dtype=np.int32))
    write_json(f"{out}/stats.json", {"version": version, "pad": "x" * 100_000})
    save_npz(f"{out}/data.npz", images=np.full((64, 32, 32, 3), version % 256, np.uint8))
"""


def _check_complete(out: Path) -> int:
    """Each target absent or one whole version; returns how many temp files were left."""
    big = out / "big.npy"
    if big.exists():
        values = load_npy(big, ndim=1, kinds="i")
        assert values.shape == (4_000_000,) and (values == values[0]).all()
    stats = out / "stats.json"
    if stats.exists():
        data = read_json(stats, keys=("version", "pad"))
        assert data["pad"] == "x" * 100_000
    data_npz = out / "data.npz"
    if data_npz.exists():
        images = load_npz(data_npz, {"images": {"ndim": 4, "kinds": "u"}})["images"]
        assert images.shape == (64, 32, 32, 3) and (images == images.flat[0]).all()
    for target in (big, stats, data_npz):
        if checksum_path(target).exists() and target.exists():
            verify(target)
    names = {p.name for p in out.iterdir()}
    artifacts = {"big.npy", "stats.json", "data.npz"}
    leftovers = {n for n in names if n not in artifacts and not n.endswith(".sha256")}
    assert all(n.startswith(".") and ".tmp" in n for n in leftovers), leftovers
    return len(leftovers)


@pytest.mark.slow
def test_killed_writer_leaves_absent_or_complete(tmp_path: Path, repo: Path):
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    out = tmp_path / "out"
    out.mkdir()
    mid_write = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {p.name for p in out.iterdir()}
        mid_write += _check_complete(out) > 0
        # Clear the leftovers so the next kill's are its own.
        for name in before:
            if name.startswith("."):
                (out / name).unlink()
    # Killed in the middle of a write at least sometimes: the test exercised the danger.
    assert mid_write >= KILLS // 8, mid_write
    assert (out / "big.npy").exists()


def test_a_complete_file_without_its_checksum_is_used(tmp_path: Path):
    """Killed between the rename and the checksum: the file is whole, only unverified."""
    from twostage.artifacts import save_npy

    path = tmp_path / "a.npy"
    save_npy(path, np.arange(5))
    checksum_path(path).unlink()
    assert (load_npy(path) == np.arange(5)).all()


def test_a_rewrite_never_pairs_the_new_file_with_the_old_checksum(tmp_path: Path, monkeypatch):
    """The old checksum is gone before the new file takes the name."""
    from twostage import artifacts

    path = tmp_path / "stats.json"
    artifacts.write_json(path, {"v": 1})
    real_replace = os.replace
    seen = []

    def replace(src, dst):
        if Path(dst) == path:
            seen.append(checksum_path(path).exists())
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace)
    artifacts.write_json(path, {"v": 2})
    assert seen == [False]
    assert json.loads(path.read_text()) == {"v": 2} and read_json(path) == {"v": 2}
