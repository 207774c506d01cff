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
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import apt_install

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
# Every rule whose inputs the faked upstream already provides: any of them may be submitted
# before the test has seen the EXPECTED calls and stops Snakemake.
READY = {*EXPECTED, "evaluate_reconstruction"}


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
    assert set(calls) <= READY, calls.keys()  # the faked upstream is not rerun

    for args in calls["train_prior"]:
        line = " ".join(args)
        assert "--gpus=1" in args, line
        assert "-p gpu" in line and "-A your-account" in line
        assert "-t 2880" in line and "--mem 4000" in line and "--cpus-per-task=" in line
        assert "--wrap=" in line and "train_prior:name=" in line
    for calibrate in calls["calibrate"]:
        line = " ".join(calibrate)
        assert not any(a.startswith(("--gpus", "--gres")) for a in calibrate), line
        assert "-t 60" in line and "--mem 2000" in line and "calibrate:name=" in line


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


# A real single-node SLURM (Debian's slurm-wlm), started inside the test when it is
# installed and we are root. No munge: auth/none on loopback ports; 8 CPUs and 1 GPU
# are declared (config_overrides) so the GPU rules can be scheduled on a CPU machine.
SLURM_CONF = """\
ClusterName=twostage-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
MinJobAge=3600
NodeName={host} CPUs=8 RealMemory=16000 Gres=gpu:1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def slurm_cluster(tmp_path: Path):
    daemons = ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo")
    if not all(shutil.which(d) for d in daemons):
        apt_install("slurmctld", "slurmd", "slurm-client")
    if os.geteuid() != 0 or not all(shutil.which(d) for d in daemons):
        pytest.skip("slurm-wlm is not installed and cannot be (needs root and apt-get)")
    conf_dir = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (conf_dir / sub).mkdir(parents=True)
    host = socket.gethostname()
    conf = conf_dir / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(host=host, ctld_port=_free_port(), d_port=_free_port(), dir=conf_dir)
    )
    # A stand-in device file: slurmd counts a GPU only when gres.conf names its file.
    (conf_dir / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    procs = [subprocess.Popen([d, "-D"], env=env, **quiet) for d in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 30
        while "idle" not in _sinfo(env):
            assert time.monotonic() < deadline, (conf_dir / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        # The job step re-runs Snakemake, which calls `srun` with every SLURM_* variable
        # removed, SLURM_CONF too; a cluster has /etc/slurm/slurm.conf, this test
        # a wrapper that puts the variable back.
        wrappers = tmp_path / "slurm-bin"
        wrappers.mkdir()
        srun = shutil.which("srun")
        (wrappers / "srun").write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec {srun} "$@"\n')
        (wrappers / "srun").chmod(0o755)
        yield {"SLURM_CONF": str(conf), "PATH_PREFIX": str(wrappers)}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _sinfo(env: dict) -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
    return out.stdout


@pytest.mark.slow
def test_real_single_node_slurm_runs_the_jobs(tmp_path, repo, tool_env, slurm_cluster):
    root = tmp_path / "project"
    ignore = shutil.ignore_patterns("results", ".snakemake", ".twostage-state", ".git", "*cache*")
    shutil.copytree(repo, root, ignore=ignore)
    # The repository's profile with this cluster's partition, no accounting, quick polling.
    profile = yaml.safe_load((repo / "workflow/profiles/slurm/config.yaml").read_text())
    profile["default-resources"] = {
        k: v for k, v in profile["default-resources"].items() if k != "slurm_account"
    }
    profile["default-resources"]["slurm_partition"] = "test"
    profile["slurm-status-command"] = "squeue"  # no slurmdbd here, so no sacct
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["latency-wait"] = 5
    (root / "workflow/profiles/slurm-test").mkdir()
    (root / "workflow/profiles/slurm-test/config.yaml").write_text(yaml.safe_dump(profile))
    targets = ["results/autoencoders/vq_mnist/model.pt", "results/data/mnist5k/manifest.json"]
    proc = subprocess.run(
        ["snakemake", *targets, "--workflow-profile", "workflow/profiles/slurm-test"]
        + ["--configfile", SMOKE],  # last: --configfile takes every argument after it
        cwd=root,
        env={
            **tool_env,
            "SLURM_CONF": slurm_cluster["SLURM_CONF"],
            "PATH": f"{slurm_cluster['PATH_PREFIX']}{os.pathsep}{tool_env['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = sorted((root / "results/logs").rglob("*.log")) + sorted(
        (root / ".snakemake/slurm_logs").rglob("*.log")
    )
    tails = "".join(f"\n--- {log}\n{log.read_text()[-1500:]}" for log in logs)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + tails
    assert "submitted with SLURM jobid" in proc.stdout + proc.stderr
    for target in targets:
        assert (root / target).stat().st_size > 0
    # The plugin deletes the SLURM logs of successful jobs; its own output names each job.
    out = proc.stdout + proc.stderr
    for rule in ("prepare_data", "train_autoencoder"):
        assert f"rule_{rule}/" in out, out[-3000:]
