"""Fault injection on a built smoke DAG: kill a job at a seeded moment, rerun, compare.

A job runs in a forked child of the test process (the heavy packages are imported and
the code hashes computed once, in the parent), in a copy of the built project: the same
``twostage <stage> <name>`` call Snakemake's rule makes, with the same one thread. Two
kinds of kill:

* at a write point: ``TWOSTAGE_FAULT_KILL_AT=N`` makes the child SIGKILL itself at the
  N-th moment of an artifact or resumable-state write (temporary file made, written,
  synced, renamed, checksummed: ``artifacts.atomic_path``);
* at a time: the parent SIGKILLs the child a seeded fraction of the job's duration in,
  or a seeded time after the job's resumable training state first appeared on disk.

The child logs each write point as it passes it, so every kill is placed exactly: the
last point logged before the kill says whether it landed before any write, in the middle
of a checkpoint or output write, or after one. A kill counts only when the child died of
it; a child that finished first is a planned kill that did not happen.
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

from twostage.artifacts import CHECKSUM_SUFFIX, leftovers
from twostage.paths import STATE_DIR, training_state

SMOKE = "params/profiles/smoke.yaml"
# Written by the fault matrix into its copies: resumable states every few training steps.
# Only trainers read it; every other job sees the params of the build (the report prints
# them all).
CHECKPOINTS = "params/profiles/fault-checkpoints.yaml"
# Keys of metrics files that measure the run's wall clock, not its result: every other
# key is compared, these by exact name only (a key merely containing "per_s" or "time",
# e.g. network_calls_per_sample or tokens_per_sample, is a result).
TIMING_KEYS = frozenset({"train_time_s", "samples_per_s", "seconds_per_image"})
# Written by every twostage call: bookkeeping, not a job's result.
BOOKKEEPING = ("results/versions.yaml", "results/logs/", "results/benchmarks/")
# The row of the matrix for the kills of Snakemake itself.
SNAKEMAKE = "snakemake itself (process group)"
# Where a kill landed, by the last write point passed: the columns of the matrix.
PLACES = (
    "before any write",
    "checkpoint mid-write",
    "checkpoint renamed, unsummed",
    "after a checkpoint",
    "output mid-write",
    "output renamed, unsummed",
    "after an output",
)


@dataclass
class Outcome:
    killed: bool  # the child died of our SIGKILL (its own at a write point, or ours)
    code: int | None  # its exit status when it was not killed
    points: list[tuple[str, str]]  # (file, moment) of the write points it passed
    seconds: float
    state_seconds: float | None = None  # when its training state first appeared, if it did

    @property
    def place(self) -> str:
        return place_of(self.points)


def place_of(points: list[tuple[str, str]]) -> str:
    """Where a kill after these write points landed (one of PLACES): by the last one."""
    if not points:
        return PLACES[0]
    file, moment = points[-1]
    what = "checkpoint" if STATE_DIR in Path(file).parts else "output"
    if moment == "checksummed":
        return f"after a{'n' if what == 'output' else ''} {what}"
    if moment == "renamed":
        return f"{what} renamed, unsummed"
    return f"{what} mid-write"


@dataclass
class Tally:
    """The fault matrix: job → where the kill landed → faults injected and survived."""

    survived: dict[str, dict[str, int]] = field(default_factory=dict)
    # Of those, the kills that left a resumable training state, each followed by a rerun
    # that resumed from it: job → count.
    resumed: dict[str, int] = field(default_factory=dict)
    ran_through: int = 0  # planned kills the job finished before reaching
    checks: int = 0  # outputs compared with the uninterrupted run's

    def add(self, job: str, place: str, resumed: bool = False) -> None:
        self.survived.setdefault(job, {}).setdefault(place, 0)
        self.survived[job][place] += 1
        self.resumed[job] = self.resumed.get(job, 0) + resumed

    @property
    def total(self) -> int:
        return sum(sum(row.values()) for row in self.survived.values())

    @property
    def total_resumed(self) -> int:
        return sum(self.resumed.values())

    def table(self) -> str:
        places = [p for p in PLACES if any(p in row for row in self.survived.values())]
        places += sorted({p for row in self.survived.values() for p in row} - set(places))
        lines = ["| job | " + " | ".join(places) + " | faults | resumed from a state |"]
        lines.append("|---" * (len(places) + 3) + "|")
        for job, row in self.survived.items():
            cells = [str(row.get(p, 0) or "") for p in places]
            resumed = self.resumed.get(job, 0) or ""
            lines.append(
                f"| {job} | " + " | ".join(cells) + f" | {sum(row.values())} | {resumed} |"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        jobs = self.total - sum(self.survived.get(SNAKEMAKE, {}).values())
        return (
            f"faults injected and survived: {self.total}; job kills: {jobs}, of them "
            f"{self.total_resumed} with a resumable training state on disk, each followed by a "
            f"rerun that resumed from it (saving only the states after it) and "
            f"{jobs - self.total_resumed} with none (the job reran from its start); every job "
            f"kill followed by its own rerun whose outputs equal the uninterrupted run's "
            f"({self.checks} comparisons, every result key); planned kills the job finished "
            f"before, not counted: {self.ran_through}"
        )


def run_job(
    root: Path,
    stage: str,
    name: str,
    kill_at: int | None = None,
    kill_after: float | None = None,
    kill_after_state: float | None = None,
) -> Outcome:
    """Run ``twostage <stage> <name>`` in a forked child in ``root``; kill it as asked
    (``kill_after_state``: that many seconds after its training state first appeared)."""
    point_log = root / ".fault-points"
    point_log.unlink(missing_ok=True)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.chdir(root)
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ["TWOSTAGE_THREADS"] = "1"  # as the rules run every job
            if kill_at is not None:
                os.environ["TWOSTAGE_FAULT_KILL_AT"] = str(kill_at)
            _log_write_points(point_log)
            from twostage import cli

            profiles = [SMOKE, *([CHECKPOINTS] if stage.startswith("train_") else [])]
            args = [a for f in profiles if Path(f).exists() for a in ("--profile", f)]
            code = cli.main([*args, stage.replace("_", "-"), *([name] if name else [])])
        finally:
            os._exit(code)
    state = root / training_state(stage, name) if name else None
    kill_time = start + kill_after if kill_after is not None else None
    status, state_time = _wait(pid, kill_time, state, kill_after_state)
    seconds = time.perf_counter() - start
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    lines = point_log.read_text().splitlines() if point_log.exists() else []
    points = [tuple(line.split("\t")) for line in lines]
    point_log.unlink(missing_ok=True)
    if killed and kill_at is None and points and points[-1][1] == "synced":
        points = _renamed_unlogged(root, points)
    state_seconds = state_time - start if state_time is not None else None
    return Outcome(killed, code, points, seconds, state_seconds)


def _renamed_unlogged(root: Path, points: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A timed kill can land between the rename and the child's log of it: the last
    point logged is "synced" but the temporary file is gone, renamed to the file. Then
    the rename happened (a rerun finds that file, e.g. one more resumable state)."""
    file, _ = points[-1]
    checksum_temp = f".{Path(file).name}{CHECKSUM_SUFFIX}."  # written after the rename
    if any(not t.name.startswith(checksum_temp) for t in leftovers(root / file)):
        return points
    return [*points, (file, "renamed")]


def _log_write_points(point_log: Path) -> None:
    """In the child: count write points from zero and log each one before it may kill."""
    from twostage import artifacts

    artifacts._points.clear()  # points the parent passed are not this job's
    fd = os.open(point_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    passed = artifacts._write_point

    def logged(path: Path, moment: str) -> None:
        os.write(fd, f"{path}\t{moment}\n".encode())  # unbuffered: there before the kill
        passed(path, moment)

    artifacts._write_point = logged


def _wait(
    pid: int,
    kill_time: float | None,
    state: Path | None = None,
    after_state: float | None = None,
    limit: float = 900.0,
) -> tuple[int, float | None]:
    """The child's wait status and when ``state`` first appeared (None: never seen);
    SIGKILL the child at ``kill_time``, or ``after_state`` seconds after the state
    appeared, if still running (a hung child is killed at ``limit`` and fails the test)."""
    give_up = time.perf_counter() + limit
    state_time = None
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return status, state_time
        now = time.perf_counter()
        if state is not None and state_time is None and state.exists():
            state_time = now
            if after_state is not None:
                kill_time = now + after_state
        if kill_time is not None and now >= kill_time:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], state_time
        if now > give_up:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"job {pid} still running after {limit:.0f} s")
        time.sleep(0.002)


def warm_up(root: Path) -> None:
    """Import the heavy packages and compute every job's code hash once, in the parent,
    so each forked job starts at once and records its versions without reparsing code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import scipy.linalg  # noqa: F401
    import sklearn.mixture  # noqa: F401
    import torch  # noqa: F401

    from twostage.config import load_params
    from twostage.provenance import versions

    versions.current(load_params([SMOKE], root=root))


def normalised(path: Path) -> str:
    """A digest of a file's result: JSON without the keys that time the run."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return hashlib.sha256(json.dumps(_strip(data), sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def check_whole(path: Path) -> None:
    """A file left after a kill must be complete: its checksum, then its format."""
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


def states(root: Path) -> list[Path]:
    """The resumable training states on disk (temporary files aside)."""
    return sorted(f for f in (root / STATE_DIR).rglob("*.pt") if not is_temp(f))


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under results/ but ``skip`` and the bookkeeping."""
    out = {}
    for f in (root / "results").rglob("*"):
        rel = f.relative_to(root).as_posix()
        if f.is_file() and rel not in skip and not rel.startswith(BOOKKEEPING):
            if rel.removesuffix(".sha256") in skip or is_temp(f):
                continue
            st = f.stat()
            out[rel] = (st.st_mtime_ns, st.st_size)
    return out


def is_temp(f: Path) -> bool:
    """A temporary file of atomic_path that a kill left (never at an artifact's name)."""
    return f.name.startswith(".") and ".tmp" in f.name


def leftovers_of(root: Path, files: list[str]) -> list[Path]:
    """Temporary files of atomic_path beside ``files`` (a job's outputs, its state)."""
    return [t for f in files for t in leftovers(root / f)]


def temp_files(root: Path) -> list[Path]:
    return sorted(
        f for top in ("results", STATE_DIR) for f in (root / top).rglob(".*") if is_temp(f)
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
