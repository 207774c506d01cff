"""Shared fixtures: the repository root, an environment where the CLI tools resolve, the
smoke DAG built once for the end-to-end tests, and a tiny project to train a prior in."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tool_env() -> dict[str, str]:
    """Environment for subprocesses: the venv's bin first (twostage, snakemake, dvc), and
    this checkout's src/ first on PYTHONPATH: the venv holds no twostage, and a subprocess
    working in a folder outside the clone (a tmp_path project) runs the code under test."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


# What a copy of the project needs; never results/ or caches of the original.
PROJECT_IGNORE = shutil.ignore_patterns(
    "results",
    ".snakemake",
    ".twostage-state",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)
SMOKE = "params/profiles/smoke.yaml"


def copy_built(src: Path, dest: Path) -> Path:
    """A copy of a built project, results, Snakemake's records and file times included, so
    Snakemake finds it as complete as the original."""
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    return dest


def narrow_targets(root: Path, runs: list[str]) -> None:
    """Narrow a copy of the project to ``runs`` by rewriting its smoke profile's targets:
    on a built copy only the report reruns. (Adding a profile instead would change every
    stage's command in dvc.yaml, which names the profiles, so DVC would rerun them all.)"""
    profile = root / SMOKE
    text, n = re.subn(r"(?m)^targets: .*$", f"targets: [{', '.join(runs)}]", profile.read_text())
    assert n == 1, f"{profile} has no one-line targets list to narrow"
    profile.write_text(text)


def session_shared_dir(tmp_path_factory) -> Path:
    """A folder every process of this test session sees: with pytest-xdist, the session's
    temporary root that holds each worker's own; without it, this process's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def smoke_dag(tmp_path_factory, repo: Path, tool_env: dict) -> Path:
    """The whole smoke DAG built once by ``snakemake --cores 2`` in a copy of the project,
    shared by the end-to-end tests, and by every worker when the suite runs in several
    (the first to need it builds it, the others wait on the lock). Read it only: a test
    that changes or rebuilds anything works in ``copy_built(smoke_dag, tmp_path / ...)``.

    ``TWOSTAGE_SMOKE_DAG=<dir>``: a smoke project built already by the same code (for
    working on one end-to-end test without rebuilding).
    """
    if os.environ.get("TWOSTAGE_SMOKE_DAG"):
        return Path(os.environ["TWOSTAGE_SMOKE_DAG"])
    shared = session_shared_dir(tmp_path_factory) / "smoke-dag"
    root, built = shared / "project", shared / "built"
    shared.mkdir(exist_ok=True)
    with FileLock(shared / "lock"):
        if built.is_file():
            return root
        shutil.rmtree(root, ignore_errors=True)  # a worker's failed attempt
        shutil.copytree(repo, root, ignore=PROJECT_IGNORE)
        proc = subprocess.run(
            ["snakemake", "--cores", "2", "--configfile", SMOKE],
            cwd=root,
            env=tool_env,
            capture_output=True,
            text=True,
            timeout=4 * 3600,  # minutes on 2 quiet cores; room for a busy machine
        )
        assert proc.returncode == 0, f"building the smoke DAG failed:\n{proc.stderr[-6000:]}"
        built.touch()
    return root


# The fault matrices recorded this session (tests/faults/test_fault_matrix.py), printed
# in the terminal summary: the faults injected and survived, by job and kill place. A
# worker of pytest-xdist writes its matrix to a folder the controlling process made.
_SUMMARIES = "TWOSTAGE_TEST_SUMMARIES"


def pytest_configure(config) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller, or a run without xdist
        os.environ[_SUMMARIES] = tempfile.mkdtemp(prefix="twostage-summaries-")


def record_fault_matrix(tally) -> None:
    if tally.total:
        out = Path(os.environ[_SUMMARIES]) / f"fault-matrix-{os.getpid()}.txt"
        out.write_text(f"{tally.table()}\n{tally.summary()}\n")


def pytest_terminal_summary(terminalreporter) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the controller prints, once all are done
        return
    folder = Path(os.environ.get(_SUMMARIES, ""))
    for found in sorted(folder.glob("fault-matrix-*.txt")) if folder.name else []:
        terminalreporter.section("fault matrix (tests/faults/test_fault_matrix.py)")
        terminalreporter.write_line(found.read_text().rstrip())
    if folder.name:
        shutil.rmtree(folder, ignore_errors=True)


def apt_install(*packages: str) -> bool:
    """Install Debian packages for a test's system tool when we are root; False if we cannot.

    The tool is part of the test's setup, not of the project: a machine without root
    or apt skips the test that needs it rather than failing.
    """
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    with FileLock(Path(tempfile.gettempdir()) / "twostage-tests-apt.lock"):  # one apt at a time
        return _apt_install(packages)


def _apt_install(packages: tuple[str, ...]) -> bool:
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)  # stale lists
    return subprocess.run(install, capture_output=True, env=env).returncode == 0


# Appended to a copy of a page: after every image has loaded or failed, record
# what the browser saw in an element that --dump-dom prints. For each headline table, its
# scrollWidth against the width its container gives it: wider means horizontal scrolling.
_BROWSER_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    images: imgs.length,
    broken: broken.map(function (i) { return i.getAttribute("src"); }),
    tables: document.querySelectorAll("table").length,
    scripts: document.scripts.length,
    viewport: window.innerWidth,
    headlines: Array.prototype.map.call(
      document.querySelectorAll("table.headline"),
      function (t) {
        return {scroll: t.scrollWidth, client: t.parentElement.clientWidth,
                caption: t.caption ? t.caption.textContent : ""};
      }
    )
  });
  document.body.appendChild(out);
});
</script>"""


def _find_chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium; installed with apt when missing and we are root, else skip."""
    exe = _find_chromium()
    if exe is None and apt_install("chromium"):
        exe = _find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    return exe


@pytest.fixture(scope="session")
def render_in_browser(chromium: str):
    """Open a local HTML file in headless Chromium; return what it saw (images, tables).

    ``width``: the window's width in CSS pixels (Chromium's default when None).
    """
    import html
    import json
    import re
    import subprocess

    def render(page: Path, width: int | None = None) -> dict:
        probe = page.with_name(f".browser-check-{page.name}")  # same folder: relative links
        probe.write_text(page.read_text().replace("</body>", _BROWSER_CHECK + "</body>"))
        try:
            proc = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--disable-gpu",
                    "--no-sandbox",  # root in a container has no user namespace sandbox
                    "--virtual-time-budget=10000",
                    *([f"--window-size={width},900"] if width else []),
                    "--dump-dom",
                    probe.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            probe.unlink()
        found = re.search(r'<pre id="browser-check">(.*?)</pre>', proc.stdout, re.S)
        assert found, f"chromium printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return json.loads(html.unescape(found.group(1)))

    return render


@pytest.fixture
def token_grid_project(tmp_path: Path, repo: Path, monkeypatch) -> Path:
    """A copy of params/ plus random 4×4 token grids: enough for `twostage train-prior`."""
    shutil.copytree(repo / "params", tmp_path / "params")
    rng = np.random.default_rng(0)
    latents = tmp_path / "results/latents/vq_mnist"
    latents.mkdir(parents=True)
    for split, n in (("train", 64), ("val", 16)):
        np.save(latents / f"{split}.npy", rng.integers(0, 128, (n, 4, 4)).astype(np.int16))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWOSTAGE_THREADS", "1")
    return tmp_path


def run_in_fresh_interpreter(code: str, timeout: int = 300) -> None:
    """Run ``code`` in a new Python process importing this checkout's package, so a check
    of what a call imports (``sys.modules``) sees no import the test session already made."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr


def load_bench(name: str):
    """A script of bench/ imported as a module (bench/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def source(tmp_path: Path, monkeypatch) -> Path:
    """A copy of src/twostage that codedeps reads and hashes instead of the real one."""
    from twostage.provenance import codedeps

    copy = tmp_path / "twostage"
    shutil.copytree(codedeps.ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codedeps, "ROOT", copy)
    monkeypatch.setattr(codedeps, "MEMO_DIR", tmp_path / "codedeps-memo")  # edits: no litter
    codedeps.clear_caches()
    yield copy
    codedeps.clear_caches()
