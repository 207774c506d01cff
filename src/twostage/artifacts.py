"""Durable artifact writing, checksums, and readers that name a damaged file.

Every output is written to a temporary name in the same directory, flushed to disk,
renamed into place and the directory entry flushed too (and each folder the write
creates, in its parent), so a crash, a kill or a power cut mid-write leaves either the
previous good file or nothing, never a truncated file that looks complete. Next to each
file goes ``<file>.sha256``, hashed once at write; the readers here verify it before use,
so a file changed since its stage wrote it is refused rather than used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

CHECKSUM_SUFFIX = ".sha256"
_CHUNK = 1 << 20
# Fault injection (tests/faults/): the process SIGKILLs itself at the N-th write point.
KILL_AT_ENV = "TWOSTAGE_FAULT_KILL_AT"
_points: list[tuple[str, str]] = []  # (file, moment) of every write point passed


def _write_point(path: Path, moment: str) -> None:
    """A moment of a write where a crash must leave no partial artifact behind."""
    _points.append((str(path), moment))
    if os.environ.get(KILL_AT_ENV) == str(len(_points)):
        os.kill(os.getpid(), signal.SIGKILL)


class ArtifactError(ValueError):
    """An artifact that is damaged, changed since written, or of the wrong shape or type.

    The message starts with the file; the CLI adds the stage that makes it and the
    command that rebuilds it.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class CheckpointError(ArtifactError):
    """A checkpoint that is damaged or belongs to other params: the message names the file."""


def checksum_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: str | Path) -> None:
    """``mkdir -p``, durably: each folder created is flushed in its parent, so a power cut
    cannot lose a folder (and the artifacts in it) whose files were flushed."""
    directory = Path(directory)
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)  # exist_ok: a concurrent job may make it first
        _fsync_dir(folder.parent)


def _sync_and_hash(path: Path) -> str:
    """Flush a written file to disk and return its sha256 (one read of what was written)."""
    digest = hashlib.sha256()
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_synced(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, checksum: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success make it ``path``, durably.

    The order keeps every moment of a kill safe: the old checksum goes first, so the
    new file never sits beside the old file's checksum; a file without a checksum
    (killed before it was written) is complete, only unverified. ``checksum=False``:
    no sidecar, for files kept in git that no stage reads as an input (dvc.yaml).
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        _write_point(path, "temp file made")
        yield Path(tmp)
        _write_point(path, "written")
        digest = _sync_and_hash(Path(tmp))
        checksum_path(path).unlink(missing_ok=True)
        _write_point(path, "synced")
        os.replace(tmp, path)
        _write_point(path, "renamed")
        if checksum:
            _write_synced(checksum_path(path), f"{digest}  {path.name}\n")
            stat = path.stat()
            _verified.add((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
        _fsync_dir(path.parent)
        _write_point(path, "checksummed")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove(path: str | Path) -> None:
    """Delete an artifact and its checksum."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def leftovers(path: str | Path) -> list[Path]:
    """The temporary files that killed writes of ``path`` or of its checksum left beside it.

    Only the names atomic_path and the checksum writer give exactly this file's
    temporaries: ``.<name>.<random>.tmp<suffix>``. The random part holds no dot, so
    another file's temporary never matches (``.a.npy.x.tmp.npy`` is a.npy's, and
    a.npy.x's would be ``.a.npy.x.<random>.tmp.x``).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    patterns = [
        re.compile(rf"\.{re.escape(n.name)}\.[^./]+\.tmp(?:{re.escape(n.suffix)})?")
        for n in (path, checksum_path(path))
    ]
    return sorted(
        f
        for f in path.parent.iterdir()
        if f.name.startswith(".") and any(p.fullmatch(f.name) for p in patterns)
    )


def write_text(path: str | Path, text: str, checksum: bool = True) -> None:
    with atomic_path(path, checksum) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    # Through a file object: given a path, torch names the archive inside after the file,
    # and the random temporary name would make every save of the same weights differ.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


# ---- reading: verify, then parse, and name the file whatever goes wrong ----

# (resolved path, size, mtime_ns) of files verified in this process: each is hashed once.
_verified: set[tuple[str, int, int]] = set()


def verify(path: str | Path) -> None:
    """Refuse a file whose bytes differ from the checksum written with it.

    A file without a checksum (written by hand, or by a version without checksums) is
    taken as it is. A file DVC restored from its cache is accepted when it matches
    dvc.lock, which DVC wrote for exactly those bytes.
    """
    path = Path(path)
    stat = path.stat()  # FileNotFoundError: the CLI names the missing input
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    sidecar = checksum_path(path)
    try:
        expected = sidecar.read_text().split()[0]
    except (FileNotFoundError, IndexError):
        expected = None
    if expected is not None and file_sha256(path) != expected and not _matches_dvc_lock(path):
        raise ArtifactError(
            path,
            f"content differs from the sha256 recorded when it was written ({sidecar.name}): "
            "truncated, damaged or changed since",
        )
    _verified.add(key)


def _matches_dvc_lock(path: Path) -> bool:
    lock = Path("dvc.lock")
    if not lock.is_file():
        return False
    import yaml

    from twostage import yamlio

    try:
        stages = (yamlio.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return False
    wanted = os.path.normpath(path)
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if os.path.normpath(out.get("path", "")) == wanted and "md5" in out:
                md5 = hashlib.md5()
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        md5.update(chunk)
                return md5.hexdigest() == out["md5"]
    return False


def read_json(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A verified JSON object (every artifact's JSON is one) that has ``keys``."""
    verify(path)
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON, truncated or damaged? ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(path, f"holds a JSON {type(data).__name__}, expected an object")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ArtifactError(path, f"has no {', '.join(map(repr, missing))} entry")
    return data


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} array of shape {tuple(array.shape)}"


def check_array(
    path: str | Path,
    array: np.ndarray,
    *,
    ndim: int | tuple[int, ...] | None = None,
    kinds: str | None = None,
    shape: tuple[int | None, ...] | None = None,
    name: str = "",
) -> np.ndarray:
    """Refuse an array of the wrong rank, dtype kind (numpy letters: 'u', 'i', 'f') or shape."""
    what = f"'{name}' is" if name else "holds"
    want = []
    if ndim is not None and array.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        want.append(f"{ndim} dimensions")
    if shape is not None and (
        array.ndim != len(shape)
        or any(s is not None and s != a for s, a in zip(shape, array.shape, strict=False))
    ):
        want.append("shape (" + ", ".join("N" if s is None else str(s) for s in shape) + ")")
    if kinds is not None and array.dtype.kind not in kinds:
        names = {"u": "unsigned integer", "i": "integer", "f": "floating", "b": "boolean"}
        want.append(" or ".join(names.get(k, k) for k in kinds) + " values")
    if want:
        raise ArtifactError(path, f"{what} a {_describe(array)}, expected {', '.join(want)}")
    return array


def load_npy(path: str | Path, **expect: Any) -> np.ndarray:
    """A verified .npy array, checked against ``expect`` (see :func:`check_array`)."""
    verify(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(
            path, f"not a readable .npy array, truncated or damaged? ({_short(exc)})"
        ) from None
    if not isinstance(array, np.ndarray):
        raise ArtifactError(path, "not a .npy array (an .npz archive?)")
    return check_array(path, array, **expect)


def load_npz(path: str | Path, expect: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays named in ``expect`` from a verified .npz, each checked (see check_array)."""
    import zipfile

    verify(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in expect if k not in f.files]
            if missing:
                raise ArtifactError(
                    path,
                    f"no array named {', '.join(map(repr, missing))} "
                    f"(found: {', '.join(f.files) or 'none'})",
                )
            arrays = {k: f[k] for k in expect}
    except ArtifactError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ArtifactError(
            path, f"not a readable .npz archive, truncated or damaged? ({_short(exc)})"
        ) from None
    for key, rules in expect.items():
        check_array(path, arrays[key], name=key, **rules)
    return arrays


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a verified checkpoint without executing code from it (``weights_only``)."""
    import torch

    verify(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            path, f"cannot load checkpoint, truncated or damaged? ({_short(exc)})"
        ) from None


@contextlib.contextmanager
def checkpoint_contents(path: str | Path) -> Iterator[None]:
    """Name the file when a loaded checkpoint lacks an entry or its tensors do not fit."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(
            path, f"checkpoint does not hold what its stage writes ({_short(exc)})"
        ) from None


def check_spec(path: str | Path, saved: dict, expected: dict | None) -> None:
    """Refuse a checkpoint trained with other params than the ones in force now."""
    if expected is None or saved == expected:
        return
    differing = sorted(k for k in saved.keys() | expected.keys() if saved.get(k) != expected.get(k))
    raise CheckpointError(path, f"trained with other params (differs in: {', '.join(differing)})")


def sha256_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
