"""Every artifact write is flushed to disk in the order that survives a power cut.

A SIGKILL cannot tell a missing fsync (the page cache outlives the process), so these
tests watch the system calls instead: ``os.fsync``, ``os.replace`` and ``os.mkdir`` are
wrapped, each fsynced descriptor is named by ``/proc/self/fd/N`` (file or folder, which
path), and every writer must

1. fsync the temporary file, then rename it to the artifact's name (the same for the
   ``.sha256`` sidecar),
2. fsync the artifact's folder after the last rename, and
3. fsync the parent of every folder it created, after creating it.

A second test reads the source: every file a module under src/ writes goes through
``artifacts.atomic_path`` (or one of the writers built on it).
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from twostage import artifacts, images
from twostage.train.common import CurveLog

SRC = Path(__file__).resolve().parents[1] / "src" / "twostage"

# Every writer of the project, each given the artifact's path (with checksum or not).
WRITERS = {
    "write_text": (lambda p: artifacts.write_text(p, "text\n"), True),
    "write_text, no checksum": (lambda p: artifacts.write_text(p, "x\n", checksum=False), False),
    "write_json": (lambda p: artifacts.write_json(p, {"a": 1}), True),
    "save_npy": (lambda p: artifacts.save_npy(p, np.arange(5)), True),
    "save_npz": (lambda p: artifacts.save_npz(p, x=np.arange(5)), True),
    "save_torch": (lambda p: artifacts.save_torch(p, {"w": torch.zeros(3)}), True),
    "images.save_png (atomic_path)": (
        lambda p: images.save_png(p, np.zeros((4, 4, 1), np.uint8)),
        True,
    ),
    "CurveLog.write (atomic_path)": (lambda p: _curve_log().write(p), True),
}


def _curve_log() -> CurveLog:
    log = CurveLog(["loss"])
    log.add(1, loss=0.5)
    return log


@pytest.fixture
def syscalls(monkeypatch) -> list[tuple]:
    """The fsyncs (kind, path), renames (src, dst) and mkdirs (path) this process makes."""
    events: list[tuple] = []
    real_fsync, real_replace, real_mkdir = os.fsync, os.replace, os.mkdir

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind, os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        return real_replace(src, dst, **kwargs)

    def mkdir(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        events.append(("mkdir", os.path.realpath(path)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return events


def _renamed_after_fsync(events: list[tuple], target: str) -> int:
    """Index of the rename onto ``target``; its source (a temporary file in the same folder)
    must have been fsynced before it."""
    renames = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == target]
    assert len(renames) == 1, f"{target} renamed into place {len(renames)} times: {events}"
    at = renames[0]
    source = events[at][1]
    assert os.path.dirname(source) == os.path.dirname(target) and source != target, events[at]
    assert ("fsync", "file", source) in events[:at], f"{source} renamed before its fsync"
    return at


@pytest.mark.parametrize("writer", WRITERS)
def test_each_write_flushes_file_rename_and_folders(writer, tmp_path: Path, syscalls):
    write, checksummed = WRITERS[writer]
    root = tmp_path.resolve()
    made, deeper = root / "made", root / "made" / "deeper"  # neither exists yet
    target = deeper / "artifact.out"
    write(target)
    assert target.is_file()

    last_rename = _renamed_after_fsync(syscalls, str(target))
    if checksummed:
        sidecar = str(artifacts.checksum_path(target))
        last_rename = max(last_rename, _renamed_after_fsync(syscalls, sidecar))
    else:
        assert not artifacts.checksum_path(target).exists()
    assert ("fsync", "dir", str(deeper)) in syscalls[last_rename + 1 :], (
        f"{writer}: the folder is not fsynced after the rename: {syscalls}"
    )
    for folder in (made, deeper):
        created = syscalls.index(("mkdir", str(folder)))
        assert ("fsync", "dir", str(folder.parent)) in syscalls[created + 1 :], (
            f"{writer}: the new folder {folder} is not fsynced in its parent: {syscalls}"
        )


def test_existing_folders_are_not_recreated(tmp_path: Path, syscalls):
    """Only the folders a write creates are flushed in their parents (no cost per write)."""
    artifacts.write_json(tmp_path / "a.json", {})
    assert not [e for e in syscalls if e[0] == "mkdir"]
    assert ("fsync", "dir", str(tmp_path.parent.resolve())) not in syscalls


# Calls that write a file or make a folder: module functions (os.replace, np.save,
# torch.save, shutil.copyfile...) and methods of any object (Path.write_text, fig.savefig,
# Image.save, DataFrame.to_csv...); ``open`` in a writing mode is checked apart.
MODULE_WRITES = {
    "os": {"replace", "rename", "renames", "mkdir", "makedirs", "link", "symlink"},
    "shutil": {"copy", "copy2", "copyfile", "copytree", "move"},
    "np": {"save", "savez", "savez_compressed", "savetxt"},
    "numpy": {"save", "savez", "savez_compressed", "savetxt"},
    "torch": {"save"},
}
METHOD_WRITES = {"write_text", "write_bytes", "savefig", "save", "mkdir", "touch", "to_csv"}


def _writes_outside_atomic_path(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.With | ast.AsyncWith):
            inside = inside or any(
                isinstance(item.context_expr, ast.Call)
                and getattr(item.context_expr.func, "id", None) == "atomic_path"
                for item in node.items
            )
        if isinstance(node, ast.Call) and not inside and _writes(node):
            found.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def _writes(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "open" and _opens_for_writing(call)
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    if owner in MODULE_WRITES:
        return func.attr in MODULE_WRITES[owner]
    if func.attr == "open":  # Path.open("w"); Image.open(file) only reads
        first = call.args[:1]
        given = isinstance(first[0], ast.Constant) if first else False
        return _opens_for_writing(call, mode_at=0 if given else 1)
    return func.attr in METHOD_WRITES and owner != "self"


def _opens_for_writing(call: ast.Call, mode_at: int = 1) -> bool:
    modes = call.args[mode_at : mode_at + 1] + [k.value for k in call.keywords if k.arg == "mode"]
    return any(
        not (isinstance(m, ast.Constant) and isinstance(m.value, str))
        or any(c in m.value for c in "wax+")
        for m in modes
    )


def test_every_write_in_src_goes_through_atomic_path():
    """Any write outside artifacts.py sits in a ``with atomic_path(...)`` block; a new one
    that does not is named here by file:line."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name != "artifacts.py":
            offenders += _writes_outside_atomic_path(path)
    assert not offenders, "files written without artifacts.atomic_path:\n" + "\n".join(offenders)
