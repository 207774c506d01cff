"""Fault injection on a built smoke DAG: kill a job at a seeded moment, rerun, compare.

A job runs in a forked child of the test process (the heavy packages are imported once,
in the parent), in a copy of the built project. Two kinds of kill:

* at a write point: ``TWOSTAGE_FAULT_KILL_AT=N`` makes the child SIGKILL itself at the
  N-th moment of an artifact or checkpoint write (temp file made, written, synced,
  renamed, checksummed: ``artifacts._write_point``);
* at a time: the parent SIGKILLs the child a seeded fraction of the job's duration in.

After each kill the outputs on disk must be absent or whole (checksum and format), then
a rerun, as Snakemake runs an incomplete job (its declared outputs deleted, the resumable
state under ``.twostage-state/`` kept), must give the outputs of an uninterrupted run
and write nothing outside the job's outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SMOKE = "params/profiles/smoke.yaml"
# Keys of metrics files that measure the run, not its result (wall clock, the process).
VOLATILE_KEYS = ("seconds", "time", "versions", "per_s", "duration", "elapsed")
# Written by every twostage call: bookkeeping, not a job's result.
BOOKKEEPING = ("results/versions.yaml", "results/logs/", "results/benchmarks/")


@dataclass
class Outcome:
    killed: bool
    code: int | None
    points: list[tuple[str, str]]  # (file, moment) of the write points passed
    seconds: float


@dataclass
class Tally:
    """The fault matrix: job kind → kill point → faults survived."""

    survived: dict[str, dict[str, int]] = field(default_factory=dict)
    ran_through: int = 0  # planned kills the job finished before reaching

    def add(self, kind: str, point: str) -> None:
        self.survived.setdefault(kind, {}).setdefault(point, 0)
        self.survived[kind][point] += 1

    @property
    def total(self) -> int:
        return sum(sum(points.values()) for points in self.survived.values())

    def table(self) -> str:
        points = sorted({p for row in self.survived.values() for p in row})
        lines = ["| job kind | " + " | ".join(points) + " | total |"]
        lines.append("|---" * (len(points) + 2) + "|")
        for kind, row in sorted(self.survived.items()):
            cells = [str(row.get(p, 0)) for p in points]
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {sum(row.values())} |")
        lines.append(f"\nfaults injected and survived: {self.total}")
        return "\n".join(lines)


def run_job(
    root: Path, stage: str, name: str, kill_at: int | None = None, kill_after: float | None = None
) -> Outcome:
    """Run ``twostage <stage> <name>`` in a forked child in ``root``; kill it as asked."""
    count_file = root / ".fault-points"
    count_file.unlink(missing_ok=True)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.chdir(root)
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ["TWOSTAGE_THREADS"] = "1"
            if kill_at is not None:
                os.environ["TWOSTAGE_FAULT_KILL_AT"] = str(kill_at)
            from twostage import artifacts, cli

            args = ["--profile", SMOKE, stage.replace("_", "-")]
            code = cli.main(args + ([name] if name else []))
            count_file.write_text(json.dumps(artifacts.write_points()))
        finally:
            os._exit(code)
    status = _wait(pid, start + kill_after if kill_after is not None else None)
    seconds = time.perf_counter() - start
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    points = json.loads(count_file.read_text()) if count_file.exists() else []
    count_file.unlink(missing_ok=True)
    return Outcome(killed, code, points, seconds)


def _wait(pid: int, kill_time: float | None, limit: float = 600.0) -> int:
    """The child's wait status; SIGKILL it at ``kill_time`` if still running (a hung
    child is killed at ``limit`` and fails the test)."""
    give_up = time.perf_counter() + limit
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status
        now = time.perf_counter()
        if kill_time is not None and now >= kill_time:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        if now > give_up:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"job {pid} still running after {limit:.0f} s")
        time.sleep(0.005)


def normalised(path: Path) -> str:
    """A digest of a file's result: JSON without the keys that measure the run."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return hashlib.sha256(json.dumps(_strip(data), sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip(obj):
    if isinstance(obj, dict):
        return {
            k: _strip(v) for k, v in obj.items() if not any(word in k for word in VOLATILE_KEYS)
        }
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def check_whole(path: Path) -> None:
    """An output left after a kill must be complete: its checksum, then its format."""
    import numpy as np

    from twostage import artifacts

    artifacts.verify(path)
    if path.suffix == ".npy":
        artifacts.load_npy(path)
    elif path.suffix == ".npz":
        with np.load(path) as f:
            [f[k] for k in f.files]
    elif path.suffix == ".json":
        artifacts.read_json(path)
    elif path.suffix == ".pt":
        artifacts.load_torch(path)
    elif path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            img.load()
    elif path.suffix == ".csv":
        path.read_text().splitlines()


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under results/ but ``skip`` and the bookkeeping."""
    out = {}
    for f in (root / "results").rglob("*"):
        rel = f.relative_to(root).as_posix()
        if f.is_file() and rel not in skip and not rel.startswith(BOOKKEEPING):
            if rel.removesuffix(".sha256") in skip or _is_temp(f):
                continue
            st = f.stat()
            out[rel] = (st.st_mtime_ns, st.st_size)
    return out


def _is_temp(f: Path) -> bool:
    """A temporary file of atomic_path that a kill left (never at an artifact's name)."""
    return f.name.startswith(".") and ".tmp" in f.name


def temp_files(root: Path) -> list[str]:
    return sorted(
        f.relative_to(root).as_posix() for f in (root / "results").rglob(".*") if _is_temp(f)
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
