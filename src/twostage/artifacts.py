"""Atomic artifact writing and small file helpers.

Every output is written to a temporary name in the same directory and renamed
into place, so a crash or a kill mid-write leaves either the previous good
file or nothing, never a truncated file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class CheckpointError(ValueError):
    """A checkpoint that is damaged or belongs to other params: the message names the file."""


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a checkpoint without executing code from it (``weights_only``)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path}: cannot load checkpoint, truncated or damaged? "
            f"({type(exc).__name__}: {str(exc)[:200]}); delete it and rerun its stage"
        ) from None


def check_spec(path: str | Path, saved: dict, expected: dict | None) -> None:
    """Refuse a checkpoint trained with other params than the ones in force now."""
    if expected is None or saved == expected:
        return
    differing = sorted(k for k in saved.keys() | expected.keys() if saved.get(k) != expected.get(k))
    raise CheckpointError(
        f"{path}: trained with other params (differs in: {', '.join(differing)}); "
        "rerun its training stage"
    )


def sha256_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
