"""Claims: the verdict arithmetic on hand values, the refusal of seeds a choice saw, the
seeds a claim adds to its runs' replicates, and the claims table read from artifacts."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from twostage import paths
from twostage.config import ConfigError, load_params
from twostage.report import claims as report_claims
from twostage.report.verdict import interval, per_seed, verdict

SMOKE = "params/profiles/smoke.yaml"
# t(0.975, 2): the 95 % two-sided Student-t quantile with 2 degrees of freedom.
T2 = 4.302652729749464


def test_interval_is_the_student_t_interval_over_seeds():
    mean, low, high = interval([1.0, 2.0, 3.0])  # mean 2, sample std 1, n 3
    half = T2 * 1.0 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-12)
    # One seed, or a value that is not finite: no interval.
    assert math.isnan(interval([5.0])[1]) and math.isnan(interval([1.0, math.nan])[2])


def test_per_seed_estimates_are_paired_by_seed():
    assert per_seed([10.0, 20.0], [4.0, 5.0], "difference") == [6.0, 15.0]
    assert per_seed([10.0, 20.0], [4.0, 5.0], "ratio") == [2.5, 4.0]
    assert per_seed([10.0, 20.0], 5.0, "ratio") == [2.0, 4.0]
    with pytest.raises(ValueError, match="pair them by seed"):
        per_seed([1.0, 2.0], [1.0], "difference")


@pytest.mark.parametrize(
    ("low", "high", "relation", "margin", "reference", "expected"),
    [
        # lower: the claim is estimate < reference − margin
        (-3.0, -1.0, "lower", 0.0, 0.0, "supported"),
        (-3.0, -1.0, "lower", 1.0, 0.0, "inconclusive"),  # the margin moves the line to −1
        (-3.0, -1.5, "lower", 1.0, 0.0, "supported"),
        (-3.0, 0.0, "lower", 0.0, 0.0, "inconclusive"),  # touching the line is not below it
        (0.0, 2.0, "lower", 0.0, 0.0, "contradicted"),
        (-0.5, 0.5, "lower", -1.0, 0.0, "supported"),  # a negative margin: below +1 suffices
        # higher: estimate > reference + margin; a ratio's reference is 1
        (1.2, 1.5, "higher", 0.1, 1.0, "supported"),
        (1.05, 1.5, "higher", 0.1, 1.0, "inconclusive"),
        (0.8, 1.1, "higher", 0.1, 1.0, "contradicted"),
        # equal: reference − margin ≤ estimate ≤ reference + margin
        (-0.4, 0.3, "equal", 0.5, 0.0, "supported"),
        (-0.6, 0.3, "equal", 0.5, 0.0, "inconclusive"),
        (0.6, 0.9, "equal", 0.5, 0.0, "contradicted"),
        (-2.0, -0.51, "equal", 0.5, 0.0, "contradicted"),
        (-2.0, 2.0, "equal", 0.5, 0.0, "inconclusive"),  # wider than the band: both
        (math.nan, math.nan, "lower", 0.0, 0.0, "inconclusive"),
    ],
)
def test_verdict_on_hand_values(low, high, relation, margin, reference, expected):
    assert verdict(low, high, relation, margin, reference) == expected


def test_verdict_from_seeds_flips_when_one_seed_moves():
    """Two seeds 10 and 12 apart: lower by 11 ± 12.7 is inconclusive; 11 and 11.2 apart,
    the interval (11.1 ± 1.27) lies below 0: supported; the same numbers claimed higher,
    contradicted."""
    _, low, high = interval(per_seed([0.0, 0.0], [10.0, 12.0], "difference"))
    assert verdict(low, high, "lower", 0.0, 0.0) == "inconclusive"
    _, low, high = interval(per_seed([0.0, 0.0], [11.0, 11.2], "difference"))
    assert high < 0
    assert verdict(low, high, "lower", 0.0, 0.0) == "supported"
    assert verdict(low, high, "higher", 0.0, 0.0) == "contradicted"


@pytest.fixture
def params_root(tmp_path: Path, repo: Path) -> Path:
    shutil.copytree(repo / "params", tmp_path / "params")
    return tmp_path


def _edit_smoke(root: Path, mutate) -> None:
    path = root / SMOKE
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_claim_on_a_seed_a_choice_used_is_refused(params_root: Path):
    _edit_smoke(params_root, lambda d: d["claims"]["absorbing_beats_glf"].update(seeds=[0, 2]))
    with pytest.raises(ConfigError) as err:
        load_params([SMOKE], root=params_root)
    message = str(err.value)
    assert message.startswith(f"{SMOKE}: claims.absorbing_beats_glf.seeds: held-out seeds [0]")
    assert "prior 'absorbing_mnist' was chosen on (chosen_on_seeds [0])" in message
    assert "\n" not in message


def test_claim_refused_by_the_chosen_seeds_of_the_other_run(params_root: Path):
    def mutate(d):
        d["priors"]["absorbing_mnist"]["chosen_on_seeds"] = [7]
        d["priors"]["glf_mnist"]["chosen_on_seeds"] = [0, 1, 2]

    _edit_smoke(params_root, mutate)
    with pytest.raises(ConfigError, match=r"held-out seeds \[1\] overlap .* prior 'glf_mnist'"):
        load_params([SMOKE], root=params_root)


def test_claim_seeds_are_added_to_its_runs_replicates(repo: Path):
    p = load_params([SMOKE], root=repo)
    # absorbing_confidence: seeds 0 1 at level chain, plus the claim's 1 and 3.
    assert p.replicates_of("absorbing_confidence") == [
        ("absorbing_confidence", 0),
        ("absorbing_confidence-seed1", 1),
        ("absorbing_confidence-seed3", 3),
    ]
    assert p.prior_of_run("absorbing_confidence-seed3") == "absorbing_mnist-seed3"
    assert p.autoencoder_of_prior("absorbing_mnist-seed3") == "vq_mnist-seed3"  # chain
    # glf: seeds 0 3 at level prior, plus the claim's 1: a new prior, the same autoencoder.
    assert [s for _, s in p.replicates_of("glf")] == [0, 1, 3]
    assert p.prior_of_run("glf-seed1") == "glf_mnist-seed1"
    assert p.autoencoder_of_prior("glf_mnist-seed1") == "ae_mnist"


def test_claim_on_a_run_without_replicates_trains_its_prior_per_seed(params_root: Path):
    def mutate(d):
        d["claims"]["ar"] = {
            "run": "autoregressive",
            "versus": 100.0,
            "metric": "fd_classifier",
            "relation": "lower",
            "seeds": [4, 5],
        }
        del d["replicates"]["autoregressive"]

    _edit_smoke(params_root, mutate)
    base_file = params_root / "params" / "evaluation.yaml"
    base = yaml.safe_load(base_file.read_text())
    del base["replicates"]["autoregressive"]
    base_file.write_text(yaml.safe_dump(base))
    p = load_params([SMOKE], root=params_root)
    assert [s for _, s in p.replicates_of("autoregressive")] == [0, 4, 5]
    assert p.prior_of_run("autoregressive-seed4") == "autoregressive_mnist-seed4"


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"run": "nope"}, r"claims\.c\.run: run 'nope' is not among the targets"),
        ({"versus": 0, "estimate": "ratio"}, r"claims\.c\.versus: a ratio against 0"),
        ({"versus": "glf"}, r"claims\.c\.versus: a run compared with itself"),
        ({"relation": "equal", "margin": -1}, r"claims\.c\.margin: an equal claim needs"),
        ({"run": "rae_gmm"}, r"claims\.c\.seeds: run 'rae_gmm' is replicated at level sampling"),
        ({"seeds": [4]}, r"claims\.c\.seeds: \[4\] is invalid"),
    ],
)
def test_bad_claims_name_file_claim_and_key(params_root: Path, claim: dict, message: str):
    base = {"run": "glf", "versus": 1.0, "metric": "fd_classifier", "relation": "lower"}
    _edit_smoke(params_root, lambda d: d["claims"].update(c={**base, "seeds": [4, 5], **claim}))
    with pytest.raises(ConfigError, match=f"^{re.escape(SMOKE)}: {message}"):
        load_params([SMOKE], root=params_root)


def _write(path: str, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data))


def test_claims_table_reads_each_held_out_seed(repo: Path, tmp_path: Path, monkeypatch):
    """FD 10, 12 (absorbing, seeds 1, 3) against 15, 13.4 (glf): differences −5, −1.4, mean
    −3.2, std 3.6 / √2, half-width t(0.975, 1) · std / √2 = 12.7 · 1.8 = 22.9: inconclusive."""
    p = load_params([SMOKE], root=repo)
    monkeypatch.chdir(tmp_path)
    fds = {"absorbing_confidence": {1: 10.0, 3: 12.0}, "glf": {1: 15.0, 3: 13.4}}
    for run, by_seed in fds.items():
        for replicate, seed in p.replicates_of(run):
            _write(paths.evaluation(replicate)["metrics"], {"fd_classifier": by_seed.get(seed, 0)})
            _write(paths.samples(replicate)["stats"], {"seconds_per_image": 0.01})
            _write(paths.prior(p.prior_of_run(replicate))["metrics"], {"val_bits_per_token": 4})
    table = report_claims.claims_table(p)
    row = table.iloc[0]
    half = 12.706204736174707 * 1.8  # t(0.975, 1) with one degree of freedom
    assert row["mean"] == pytest.approx(-3.2)
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((-3.2 - half, -3.2 + half))
    assert row["verdict"] == "inconclusive"
    assert row["estimate"] == "difference paired by seed"
    assert row["statement"] == "fd_classifier: absorbing_confidence − glf < 0"
    assert row["chosen_on_seeds"] == "absorbing_mnist: 0; glf_mnist: 0"
    assert row["held_out_seeds"] == "1 3"
    # A metric no stage measured: one line naming the claim and what was measured.
    p.data["claims"]["absorbing_beats_glf"]["metric"] = "fd_typo"
    with pytest.raises(ConfigError, match=r"claims\.absorbing_beats_glf\.metric: 'fd_typo'"):
        report_claims.claims_table(p)


def test_estimates_print_positionally_with_their_significant_digits():
    from twostage.report.claims import significant

    assert significant(90.94, 3) == "90.9" and significant(130.4, 2) == "130"  # not 1.3e+02
    assert significant(0.0123, 2) == "0.012" and significant(-3.14159, 3) == "-3.14"
    assert significant(12345678.0, 3) == "1.23e+07"  # beyond a million: exponent
