"""The held-out claim check of bench/heldout_claims.py, with hand-computed answers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "heldout_claims.py"


@pytest.fixture(scope="module")
def claims():
    return load_bench("heldout_claims")


def test_interval_is_the_student_t_half_width(claims):
    # mean 2, sample std 1, n 3: t(0.975, 2) = 4.302653 → 4.302653 / sqrt(3)
    mean, half = claims.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(claims.interval([5.0])[1])


def test_a_claim_is_supported_only_when_the_whole_interval_is(claims):
    assert claims.verdict((4.5, 0.4), (1.00, 0.04), 4, 1.05) == "supported"
    assert claims.verdict((4.3, 0.4), (1.00, 0.04), 4, 1.05) == "means only"  # 3.9 < 4
    assert claims.verdict((4.5, 0.4), (1.03, 0.04), 4, 1.05) == "means only"  # 1.07 > 1.05
    assert claims.verdict((3.9, 0.0), (1.00, 0.00), 4, 1.05) == "no"


def test_the_table_reads_every_run(tmp_path):
    def run(name, speed, ratio):
        rows = [
            {"label": "ref", "speedup": 1.0, "fd_ratio": 1.0, "fd": 50.0},
            {"label": "fast", "speedup": speed, "fd_ratio": ratio, "fd": 50.0 * ratio},
        ]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"project": name, "n": 10, "rows": rows}))
        return str(path)

    files = [run("a", 5.0, 1.0), run("b", 5.0, 1.0)]
    out = subprocess.run([sys.executable, BENCH, *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fast = next(line for line in out.stdout.splitlines() if line.startswith("| fast"))
    # identical runs: zero spread, so the interval is the point and the claim holds
    assert "5.00 ± 0.00×" in fast and "1.000 ± 0.000" in fast and fast.endswith("supported |")
