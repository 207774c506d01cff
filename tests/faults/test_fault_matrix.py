"""The fault matrix: every kind of job SIGKILLed at seeded moments on the built smoke DAG,
and the Snakemake process itself killed mid-DAG; every rerun ends with the results of an
uninterrupted run, no partial file is ever taken as complete, and nothing upstream is redone.

Jobs run in forked children (harness.py) in copies of the shared smoke DAG
(conftest.smoke_dag): two lanes, each its own copy, each taking the next job kind left. For
each: an uninterrupted run gives the reference outputs and its write points (and must
equal the DAG's own build); then its seeded kills, and for a trainer more kills once its
first resumable state is on disk. Every kill is followed by its own rerun: the outputs
the kill left are checked whole and deleted, as Snakemake deletes an incomplete job's
outputs; the resumable state is kept. A rerun after a kill that left a state must resume
from it (it saves only the states after it); the rerun must remove the temporary files
the kill left of its outputs and state, and give the reference outputs (every JSON key
but the timing ones). Then the build's outputs are put back, so the next job reads
exactly what the build read. Snakemake itself is killed, with its jobs, in another copy.
The matrix is printed at the end of the session (conftest.pytest_terminal_summary) and
described in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from conftest import SMOKE, copy_built, record_fault_matrix
from filelock import FileLock
from harness import (
    CHECKPOINTS,
    PLACES,
    SNAKEMAKE,
    STATE_DIR,
    Outcome,
    Tally,
    check_whole,
    leftovers_of,
    log,
    normalised,
    place_of,
    run_job,
    snapshot,
    states,
    training_state,
    warm_up,
)

from twostage import plan
from twostage.config import load_params

pytestmark = pytest.mark.slow

SEED = 19
# Resumable states every other step for the trainers in the work copy, so kills land
# before, during and after many of them (the key changes no result, which the
# bit-identity check against the DAG's own build confirms).
CHECKPOINT_EVERY = 2
# Besides the kills of FAULTS, each trainer with a resumable state is killed this many
# times once its first state is on disk, of them STATE_TIME_KILLS at a seeded time after
# the state appeared: each such kill is followed by a rerun that must resume from it.
STATE_KILLS = 6
STATE_TIME_KILLS = 2
# (stage, name, kills): every kind of job of the smoke DAG, upstream first. Each trainer
# of every model kind, and each job that reads the models, for one model of a kind; more
# kills where a run is short, fewer where it is long.
FAULTS: list[tuple[str, str, int]] = [
    ("prepare_data", "mnist5k", 4),
    ("train_classifier", "mnist5k", 3),
    ("extract_features", "mnist5k", 4),
    ("train_autoencoder", "vq_mnist", 5),  # VQ: codebook, tokens
    ("train_autoencoder", "ae_mnist", 4),  # continuous: plain
    ("train_autoencoder", "rae_mnist", 4),  # continuous: regularised
    ("train_autoencoder", "vae_mnist", 4),  # continuous: variational
    ("encode", "vq_mnist", 6),
    ("encode", "vae_mnist", 3),
    ("calibrate", "vq_mnist", 4),
    ("evaluate_reconstruction", "vq_mnist", 4),
    ("train_prior", "absorbing_mnist", 7),  # discrete: absorbing diffusion
    ("train_prior", "autoregressive_mnist", 6),  # discrete: autoregressive
    ("train_prior", "glf_mnist", 5),  # joint: autoencoder and flow (GLF)
    ("train_prior", "flow_vae_mnist", 5),  # joint: VAE and flow
    ("train_prior", "gmm_rae_mnist", 4),  # continuous: GMM
    ("train_prior", "vae_prior_mnist", 3),  # continuous: the VAE's own prior
    ("inpaint", "absorbing_mnist", 6),
    ("large_samples", "absorbing_mnist", 6),
    ("sample", "absorbing_confidence", 6),
    ("sample", "autoregressive", 4),
    ("sample", "glf", 4),
    ("sample", "rae_gmm", 3),
    ("evaluate", "autoregressive", 4),
    ("evaluate", "glf", 3),
    ("neighbours", "autoregressive", 4),
    ("report", "", 4),
]
# Jobs run with one thread, as the rules run them: two lanes of jobs use both cores.
LANES = 2
TIME_KILLS = 0.25  # the share of each job's kills at a seeded time, not a write point
# Files a job writes beside its declared outputs (the report's figures and tables).
UNDECLARED = {"report": "results/report/"}
TALLY = Tally()
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def matrix():
    """The matrix of every fault injected here, for the session summary."""
    yield
    record_fault_matrix(TALLY)


def _clear(root: Path, outputs: list[str]) -> None:
    """What Snakemake does before it reruns an incomplete job: delete its outputs."""
    for out in outputs:
        (root / out).unlink(missing_ok=True)


def _kills(rng: random.Random, clean: Outcome, n: int) -> list[tuple[str, float]]:
    """``n`` seeded kills: at write points spread over where they land (checkpoint or
    output, mid-write, renamed or after), the rest at seeded fractions of the job's time."""
    n_times = max(1, round(n * TIME_KILLS))
    by_place: dict[str, list[int]] = {}
    for k in range(1, len(clean.points) + 1):
        by_place.setdefault(place_of(clean.points[:k]), []).append(k)
    groups = [by_place[p] for p in PLACES if p in by_place]
    rng.shuffle(groups)
    points: list[int] = []
    for i in range(min(n - n_times, len(clean.points))):
        group = [k for k in groups[i % len(groups)] if k not in points]
        points += [rng.choice(group)] if group else []
    kills = [("kill_at", float(k)) for k in sorted(points)]
    kills += [("kill_after", rng.uniform(0.05, 0.9) * clean.seconds) for _ in range(n_times)]
    return kills


def _state_kills(rng: random.Random, clean: Outcome, taken: set[int]) -> list[tuple[str, float]]:
    """A trainer's kills once its first resumable state is on disk: write points spread
    evenly over the rest of its run (later saves, output writes), none of ``taken``, and
    seeded times after the state appeared (mid-step, between saves)."""
    first = next(k for k in range(1, len(clean.points) + 1) if _saves(clean.points[:k], "renamed"))
    later = [k for k in range(first, len(clean.points) + 1) if k not in taken]
    n = STATE_KILLS - STATE_TIME_KILLS
    spread = [later[i * len(later) // n : (i + 1) * len(later) // n] for i in range(n)]
    kills = [("kill_at", float(rng.choice(part))) for part in spread if part]
    after = clean.seconds - (clean.state_seconds or 0.0)
    kills += [("kill_after_state", rng.uniform(0.05, 0.9) * after) for _ in range(STATE_TIME_KILLS)]
    return kills


def _saves(points: list[tuple[str, str]], moment: str = "temp file made") -> int:
    """How many resumable-state writes reached ``moment`` among these write points."""
    return sum(1 for f, m in points if STATE_DIR in Path(f).parts and m == moment)


def _digests(root: Path, outputs: list[str]) -> dict[str, str]:
    return {o: normalised(root / o) for o in outputs}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: what a quiet machine would need."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def test_jobs_killed_at_any_moment_rerun_to_the_same_results(
    smoke_dag: Path, tmp_path: Path, tool_env: dict
):
    start, cpu = time.perf_counter(), _cpu_seconds()
    only = os.environ.get("TWOSTAGE_FAULTS_ONLY")  # "stage name,stage name": a subset
    todo = [f for f in FAULTS if not only or f"{f[0]} {f[1]}".strip() in only.split(",")]
    lanes = {}
    for i in range(LANES):  # each lane its own copy of the DAG, in a fresh interpreter
        work = copy_built(smoke_dag, tmp_path / f"work{i}")
        (work / CHECKPOINTS).write_text(f"checkpoint_every: {CHECKPOINT_EVERY}\n")
        result = tmp_path / f"lane{i}.json"
        args = json.dumps([str(smoke_dag), str(work), todo, str(tmp_path / "taken"), str(result)])
        lanes[subprocess.Popen([sys.executable, "-c", LANE, args], env=tool_env)] = result
    errors, not_identical, survived, resumed = [], [], {}, {}
    for proc, result in lanes.items():
        proc.wait()
        assert result.exists(), "a lane of the fault matrix died"
        lane = json.loads(result.read_text())
        errors += [lane["error"]] if lane["error"] else []
        not_identical += lane["not_identical"]
        survived |= lane["survived"]
        resumed |= lane["resumed"]
        TALLY.ran_through += lane["ran_through"]
        TALLY.checks += lane["checks"]
    for stage, name, _ in todo:  # the matrix in the order of FAULTS, upstream first
        label = f"{stage} {name}".strip()
        for where, n in survived.get(label, {}).items():
            TALLY.survived.setdefault(label, {})[where] = n
        TALLY.resumed[label] = resumed.get(label, 0)
    log(f"job faults: {time.perf_counter() - start:.0f} s, {_cpu_seconds() - cpu:.0f} CPU s")
    assert not errors, "\n\n".join(errors)
    log(f"outputs not bit-identical to the DAG's own build: {not_identical or 'none'}")
    assert not not_identical, not_identical


# A lane: a fresh Python (no state of the tests run before in this session) that imports
# the heavy packages once and forks each job from there.
LANE = f"""
import json, sys
sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]
import test_fault_matrix
test_fault_matrix.lane(*json.loads(sys.argv[1]))
"""


def _next(faults: list, taken: Path) -> list | None:
    """The next job kind no lane has taken (``taken`` counts them): the lanes share the list,
    so one that drew short jobs takes more of them and both end at about the same time."""
    with FileLock(f"{taken}.lock"):
        i = int(taken.read_text()) if taken.exists() else 0
        taken.write_text(str(i + 1))
    return faults[i] if i < len(faults) else None


def lane(smoke_dag: str, work: str, faults: list, taken: str, result: str) -> None:
    """Run job kinds of ``faults`` until none is left; write this lane's tally (or the
    failure) to ``result``."""
    smoke_dag, work, taken = Path(smoke_dag), Path(work), Path(taken)
    tally, not_identical, error = Tally(), [], ""
    try:
        warm_up(work)
        p = load_params([SMOKE], root=work)
        while (fault := _next(faults, taken)) is not None:
            stage, name, n_kills = fault
            not_identical += _faults_of_one_job(smoke_dag, work, p, stage, name, n_kills, tally)
    except BaseException:  # noqa: BLE001 - reported by the test in the parent
        error = traceback.format_exc()
    Path(result).write_text(
        json.dumps(
            {
                "survived": tally.survived,
                "ran_through": tally.ran_through,
                "checks": tally.checks,
                "resumed": tally.resumed,
                "not_identical": not_identical,
                "error": error,
            }
        )
    )


def _faults_of_one_job(
    smoke_dag: Path, work: Path, p, stage: str, name: str, n_kills: int, tally: Tally
) -> list[str]:
    """One job's uninterrupted run and seeded kills, each followed by its own rerun that
    must give the same outputs; return the outputs that differ from the DAG's own build."""
    label = f"{stage} {name}".strip()
    start, cpu = time.perf_counter(), _cpu_seconds()
    rng = random.Random(f"{SEED} {label}")
    job = plan.job(p, stage, name) if stage != "report" else plan.report_job(p)
    outputs = [*job.outs, *job.metrics, *job.plots]
    state = [training_state(stage, name)] if name else []
    prefix = UNDECLARED.get(stage, "\0")
    others = {k: v for k, v in snapshot(work, set(outputs)).items() if not k.startswith(prefix)}
    _clear(work, outputs)
    clean = run_job(work, stage, name)
    assert clean.code == 0 and not clean.killed, f"{label}: the uninterrupted run failed"
    expected = _digests(work, outputs)
    tally.checks += 1
    differ = [o for o in outputs if expected[o] != normalised(smoke_dag / o)]
    saves = _saves(clean.points)  # resumable states an uninterrupted run writes
    kills = _kills(rng, clean, n_kills)
    if saves:
        taken = {int(at) for how, at in kills if how == "kill_at"}
        kills += _state_kills(rng, clean, taken)
    for how, at in kills:
        _clear(work, outputs)
        killed = run_job(work, stage, name, **{how: int(at) if how == "kill_at" else at})
        if killed.killed:
            for o in outputs:  # whatever the kill left must be whole
                if (work / o).exists():
                    check_whole(work / o)
            for s in states(work):  # and the state a rerun resumes from
                check_whole(s)
            resumable = any((work / s).exists() for s in state)
            kept = _saves(killed.points, "renamed") if resumable else 0
            assert kept or not resumable, f"{label}: a state on disk that no write renamed"
            _clear(work, outputs)
            out = run_job(work, stage, name)
            # A rerun resumes from the state the kill left: it saves exactly the states
            # after it (one from scratch would save them all, as it must with no state).
            assert _saves(out.points) == saves - kept, (
                f"{label}: killed at {killed.place} with {kept} states saved, the rerun saved "
                f"{_saves(out.points)} of {saves}: it did not resume from the state left"
            )
            assert not leftovers_of(work, outputs + state), f"{label}: kill leftovers stayed"
        else:
            out = killed
            tally.ran_through += 1  # finished before the kill: no fault injected
        assert out.code == 0 and not out.killed, f"{label}: a rerun after {killed.place} failed"
        got = _digests(work, outputs)
        tally.checks += 1
        assert got == expected, f"{label}: killed {killed.place}, the rerun differs"
        assert not states(work), f"{label}: a finished job left its resumable state"
        if killed.killed:
            tally.add(label, killed.place, resumed=resumable)
    if saves:  # a kill at a write point after the first save always finds that state
        assert tally.resumed[label] >= STATE_KILLS - STATE_TIME_KILLS, f"{label}: few resumed"
    now = {k: v for k, v in snapshot(work, set(outputs)).items() if not k.startswith(prefix)}
    assert now == others, f"{label}: rewrote files outside its outputs (upstream work)"
    for o in outputs:  # the build's own files back: the next job reads exactly what it read
        for f in (o, o + ".sha256"):
            if (smoke_dag / f).exists():
                shutil.copy2(smoke_dag / f, work / f)
    n = sum(tally.survived.get(label, {}).values())
    seconds = f"{time.perf_counter() - start:.0f} s, {_cpu_seconds() - cpu:.0f} CPU s"
    places = tally.survived.get(label, {})
    resumed = tally.resumed.get(label, 0)
    log(
        f"{label}: {n} faults survived {places}, {resumed} resumed from a state "
        f"({len(clean.points)} write points, {saves} states saved; {seconds})"
    )
    return [f"{label}: {o}" for o in differ]


# Snakemake's log: a job starts with "rule X:" (or "localrule X:") and its "jobid: N",
# and ends with "Finished jobid: N".
JOB_START = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", re.M)
JOB_DONE = re.compile(r"^Finished jobid: (\d+)", re.M)


def _jobs_in_log(text: str) -> tuple[dict[str, list[str]], set[str]]:
    """Jobs started (jobid → outputs) and finished (jobids) according to Snakemake's log."""
    started = {}
    for rule, block in JOB_START.findall(text):
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines() if ": " in line)
        if rule != "all":
            started[fields["jobid"]] = [o.strip() for o in fields.get("output", "").split(",")]
    return started, set(JOB_DONE.findall(text)) & set(started)


def _snakemake(root: Path, env: dict, *args: str) -> str:
    proc = subprocess.run(
        ["snakemake", "--configfile", SMOKE, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it had finished
        os.killpg(pid, signal.SIGKILL)


def test_snakemake_killed_mid_dag_finishes_on_rerun(smoke_dag: Path, tmp_path: Path, tool_env):
    """Snakemake and its jobs killed (a crash of the node) twice while it redoes one run's
    chain (sample → evaluate → neighbours → report): each time ``snakemake --unlock`` and
    ``snakemake --rerun-incomplete`` go on; the end has the uninterrupted run's results, no
    job finished before a kill was redone, and nothing is left to do."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    root = copy_built(smoke_dag, tmp_path / "dag")
    p = load_params([SMOKE], root=root)
    run = "autoregressive"
    chain = [plan.sample_job(p, run), plan.evaluate_job(p, run), plan.neighbours_job(p, run)]
    report = plan.report_job(p)
    outputs = {o for j in chain for o in (*j.outs, *j.metrics, *j.plots)}
    expected = _digests(smoke_dag, sorted(outputs))
    # The report shows each job's run time (Snakemake's benchmarks): compared whole only.
    outputs |= {*report.outs, *report.plots}
    report_files = {o for o in snapshot(root, set()) if o.startswith("results/report/")}
    others = snapshot(root, outputs | report_files)
    rng = random.Random(SEED)
    done_before: dict[str, tuple[int, int]] = {}  # outputs of jobs finished before a kill
    args = ["--forcerun", chain[0].outs[0]]
    places = []
    for attempt in (1, 2):  # each time once a job of the chain is done and the next begun
        text = _run_and_kill(root, tool_env, args, attempt, rng, tmp_path)
        started, finished = _jobs_in_log(text)
        running = sorted(set(started) - finished)
        for jobid in running:  # what the kill left of a job's outputs must be whole
            for o in started[jobid]:
                if (root / o).exists():
                    check_whole(root / o)
        for jobid in finished:
            for o in started[jobid]:
                if o not in done_before and (root / o).exists():
                    done_before[o] = _stat(root / o)
        place = "snakemake: jobs running" if running else "snakemake: between jobs"
        places.append(place)
        _snakemake(root, tool_env, "--unlock")
        args = ["--rerun-incomplete"]
    _snakemake(root, tool_env, "--cores", "2", "--rerun-incomplete")
    assert _digests(root, sorted(expected)) == expected
    for o in outputs:
        check_whole(root / o)
    assert {o: _stat(root / o) for o in done_before} == done_before, "finished jobs were redone"
    assert snapshot(root, outputs | report_files) == others, "completed upstream work was redone"
    assert "Nothing to be done" in _snakemake(root, tool_env, "-n", "--cores", "2")
    for place in places:
        TALLY.add(SNAKEMAKE, place)
    log(f"Snakemake faults: {time.perf_counter() - start:.0f} s, {_cpu_seconds() - cpu:.0f} CPU s")


def test_the_matrix_counts_at_least_100_faults_40_resumed_over_every_job_kind():
    if os.environ.get("TWOSTAGE_FAULTS_ONLY"):
        pytest.skip("a subset of the matrix ran (TWOSTAGE_FAULTS_ONLY)")
    log("\n" + TALLY.table() + "\n" + TALLY.summary())
    missed = [f"{s} {n}".strip() for s, n, _ in FAULTS if f"{s} {n}".strip() not in TALLY.survived]
    assert not missed, f"no kill landed in: {missed}"
    assert SNAKEMAKE in TALLY.survived
    assert TALLY.total >= 100, TALLY.total
    assert TALLY.total_resumed >= 40, TALLY.total_resumed


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _run_and_kill(
    root: Path, env: dict, args: list[str], attempt: int, rng: random.Random, tmp: Path
) -> str:
    """Start Snakemake; once one job has finished and another has begun, SIGKILL its
    process group a seeded moment later; return its log."""
    log_path = tmp / f"snakemake-{attempt}.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            ["snakemake", "--cores", "2", "--configfile", SMOKE, *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        started, finished = _jobs_in_log(log_path.read_text())
        if finished and set(started) - finished:
            break
        time.sleep(0.05)
    time.sleep(rng.uniform(0.2, 2.0))
    assert proc.poll() is None, f"Snakemake ended before the kill:\n{log_path.read_text()[-3000:]}"
    _kill_group(proc.pid)
    assert proc.wait() == -signal.SIGKILL
    return log_path.read_text()
