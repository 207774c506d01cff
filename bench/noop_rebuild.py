"""The smoke DAG per stage, and a no-op rebuild through Snakemake and DVC (target < 10 s each).

    python bench/noop_rebuild.py [--repeats 3] [--keep DIR]

In a temporary copy of the project (never touching this checkout's results/):

1. git init + commit, `twostage --profile smoke dvc-yaml > dvc.yaml`, commit;
2. `snakemake --cores 2 --configfile params/profiles/smoke.yaml`: the smoke DAG, timed,
   with each job's time and peak memory from its `benchmark:` file;
3. with nothing changed, `--repeats` times each: `snakemake` (a real no-op run) and
   `snakemake -n`;
4. `dvc commit -f`: records the outputs Snakemake just built in dvc.lock, so that DVC's
   no-op can be measured without building everything a second time; then `dvc repro`
   and `dvc status`, `--repeats` times each, and Snakemake's no-op again: `dvc commit`
   rewrote the output files, so their modification times are out of DAG order and
   Snakemake compares contents instead (profiles/default: max-checksum-file-size);
5. side by side, as the floor each could reach, the bare tool start-up
   (`snakemake --version`, `dvc version`) and the import of what the Snakefile imports
   from twostage.

``--reuse DIR`` skips steps 1-2 and measures an existing, fully built copy;
``--configfile none`` times the default config instead of the smoke profile (e.g. a
copy of a default run: git and DVC initialised, the repository's dvc.yaml).

Prints Markdown tables for bench/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_times import read_benchmarks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = "params/profiles/smoke.yaml"
IGNORE = shutil.ignore_patterns(
    "results",
    ".snakemake",
    ".twostage-state",
    ".git",
    ".dvc",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)
GIT_ID = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(args: list[str], cwd: Path, env: dict, stdout=None) -> tuple[float, str]:
    """Run a command to completion; return its wall time and its output (fail loudly)."""
    start = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        text=True,
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE,
    )
    seconds = time.perf_counter() - start
    output = proc.stdout if stdout is None else proc.stderr
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed in {cwd}:\n{output[-4000:]}")
    return seconds, output or ""


def timed(args: list[str], cwd: Path, env: dict, repeats: int, expect: str | None) -> list[float]:
    times = []
    for _ in range(repeats):
        seconds, output = run(args, cwd, env)
        if expect is not None and expect not in output:
            sys.exit(f"{' '.join(args)}: expected {expect!r} (was it really a no-op?):\n{output}")
        times.append(seconds)
    return times


def prepare(root: Path, env: dict) -> float:
    """Copy the project, commit it with the smoke dvc.yaml, build the smoke DAG; its wall time."""
    shutil.copytree(REPO, root, ignore=IGNORE)
    run(["git", "init", "-q"], root, env)
    with open(root / "dvc.yaml", "w") as dvc_yaml:
        run(["twostage", "--profile", SMOKE, "dvc-yaml"], root, env, stdout=dvc_yaml)
    run(["dvc", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", *GIT_ID, "commit", "-qm", "smoke"], root, env)
    seconds, _ = run(["snakemake", "--cores", "2", "--configfile", SMOKE], root, env)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build in this (new) directory and keep it")
    parser.add_argument("--reuse", type=Path, help="measure this built project (DIR/project)")
    parser.add_argument("--configfile", default=SMOKE, help="'none' = the default config")
    args = parser.parse_args()
    env = tool_env()

    parent = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="twostage-noop-"))
    root = parent / "project"
    load = os.getloadavg()[0]
    smoke_seconds = None if args.reuse else prepare(root, env)

    snake = ["snakemake", "--cores", "2"]
    snake += [] if args.configfile == "none" else ["--configfile", args.configfile]
    imports = "import twostage.provenance.adopt, twostage.config, twostage.paths, twostage.plan, "
    imports += "twostage.provenance.versions; "
    imports += "twostage.provenance.versions.current(twostage.config.load_params())"
    measurements = {
        "snakemake (no-op run)": timed(snake, root, env, args.repeats, "Nothing to be done"),
        "snakemake -n": timed(snake + ["-n"], root, env, args.repeats, "Nothing to be done"),
    }
    run(["dvc", "commit", "-f", "-q"], root, env)
    measurements |= {
        "dvc repro": timed(["dvc", "repro"], root, env, args.repeats, "up to date"),
        "dvc status": timed(["dvc", "status"], root, env, args.repeats, "up to date"),
        "snakemake -n after dvc commit": timed(
            snake + ["-n"], root, env, args.repeats, "Nothing to be done"
        ),
        "floor: snakemake --version": timed(
            ["snakemake", "--version"], root, env, args.repeats, None
        ),
        "floor: dvc version": timed(["dvc", "version"], root, env, args.repeats, None),
        "floor: python -c '<the Snakefile's twostage imports and hashes>'": timed(
            [sys.executable, "-c", imports], root, env, args.repeats, None
        ),
        "floor: python -c pass": timed([sys.executable, "-c", "pass"], root, env, 3, None),
    }

    print(f"Load average (1 min) at the start: {load:.1f}; `nproc` = {os.cpu_count()}\n")
    if smoke_seconds is not None:
        print(f"Smoke DAG, `snakemake --cores 2` from scratch: {smoke_seconds:.1f} s\n")
    print("| command (nothing changed) | median (s) | runs (s) |\n|---|---:|---|")
    for name, times in measurements.items():
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| `{name}` | {statistics.median(times):.2f} | {runs} |")
    print("\nSmoke DAG per stage (Snakemake `benchmark:` files):\n")
    print("| stage | job | wall time (s) | max RSS (MB) |\n|---|---|---:|---:|")
    rows = read_benchmarks(root / "results/benchmarks")
    for stage, job, seconds, rss in rows:
        print(f"| {stage} | {job} | {seconds:.1f} | {rss:.0f} |")
    print(f"| **sum** | | **{sum(r[2] for r in rows):.1f}** | |")
    if not (args.keep or args.reuse):
        shutil.rmtree(parent)


if __name__ == "__main__":
    main()
