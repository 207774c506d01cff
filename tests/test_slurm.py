"""The SLURM profile through snakemake-executor-plugin-slurm: the sbatch calls it generates.

No SLURM daemon runs here: stand-ins for sbatch, sacct, sacctmgr, ... on PATH record each
submission instead of queueing it, and the workflow is stopped once the first wave
of jobs has been submitted. Upstream outputs are faked (empty files, ordered
mtimes) so that wave holds a GPU job (prior training) and a CPU job (calibration).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from twostage.config import load_params
from twostage.plan import jobs

SMOKE = "params/profiles/smoke.yaml"
UPSTREAM = {"prepare_data", "train_classifier", "extract_features", "train_autoencoder", "encode"}
SHIMS = {
    # --parsable: sbatch prints the job id (its own pid: unique per call).
    "sbatch": 'echo "$@" >> "$SHIM_LOG"; cat > /dev/null; echo $$',
    "sacctmgr": "echo your-account",
    "sshare": "echo your-account",
    "sinfo": "true",
    "sacct": "true",
    "squeue": "true",
    "scancel": "true",
}
EXPECTED = {"train_prior": 2, "calibrate": 1}


def _project(tmp_path: Path, repo: Path) -> Path:
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("results", ".snakemake", ".twostage-state", ".git", "*cache*")
    shutil.copytree(repo, root, ignore=ignore)
    stamp = time.time() - 1000
    for job in jobs(load_params([SMOKE], root=root)):
        if job.stage in UPSTREAM:
            stamp += 10  # upstream first: every output newer than its inputs
            for path in job.outs + job.metrics + job.plots:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(b"")
                os.utime(root / path, (stamp, stamp))
    return root


def _shims(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "shims"
    bin_dir.mkdir()
    for name, body in SHIMS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _submissions(log: Path) -> dict[str, list[list[str]]]:
    """Recorded sbatch calls by rule name (from the plugin's --comment rule_<name>_...)."""
    calls: dict[str, list[list[str]]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        args = shlex.split(line)
        comment = args[args.index("--comment") + 1]
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        calls.setdefault(rule, []).append(args)
    return calls


def _complete(calls: dict) -> bool:
    return all(len(calls.get(rule, [])) >= n for rule, n in EXPECTED.items())


def test_slurm_profile_submits_gpu_memory_and_runtime(tmp_path: Path, repo: Path, tool_env: dict):
    root, log = _project(tmp_path, repo), tmp_path / "sbatch.log"
    env = {**tool_env, "SHIM_LOG": str(log)}
    env["PATH"] = f"{_shims(tmp_path)}{os.pathsep}{env['PATH']}"
    cmd = ["snakemake", "--workflow-profile", "workflow/profiles/slurm", "--configfile", SMOKE]
    cmd += ["--rerun-triggers", "mtime"]
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 240
    while not _complete(_submissions(log)) and proc.poll() is None:
        assert time.monotonic() < deadline, "no submissions in time"
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()  # the submissions are all this test needs (nothing was really queued)
    output = proc.communicate(timeout=120)[0]
    calls = _submissions(log)
    assert _complete(calls), output[-4000:]
    assert set(calls) == set(EXPECTED), calls.keys()  # the faked upstream is not rerun

    for args in calls["train_prior"]:
        line = " ".join(args)
        assert "--gpus=1" in args, line
        assert "-p gpu" in line and "-A your-account" in line
        assert "-t 2880" in line and "--mem 4000" in line and "--cpus-per-task=" in line
        assert "--wrap=" in line and "train_prior:name=" in line
    (calibrate,) = calls["calibrate"]
    line = " ".join(calibrate)
    assert not any(a.startswith("--gpus") or a.startswith("--gres") for a in calibrate), line
    assert "-t 60" in line and "--mem 2000" in line and "calibrate:name=vq_mnist" in line


def test_every_rule_declares_threads_and_cluster_resources(repo: Path):
    rules = {}
    for smk in sorted((repo / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            if block.startswith("rule "):
                rules[block.split(":")[0].removeprefix("rule ")] = block
    assert {"train_autoencoder", "train_prior", "sample", "report"} <= set(rules)
    for name, block in rules.items():
        for declared in ("threads:", "resources:", "gpu=", "mem_mb=", "runtime="):
            assert declared in block, f"rule {name} does not declare {declared}"
