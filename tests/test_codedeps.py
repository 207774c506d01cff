"""Code and software as dependencies: which jobs an edit or an upgrade makes stale.

The expected sets come from the plan's graph (a job and everything downstream of it),
never from codedeps itself; the edits are made in a temporary copy of the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from code_edits import edit_function_body, reformat_without_changing_code

from twostage import paths
from twostage.config import load_params
from twostage.kinds import CONTINUOUS_AUTOENCODERS, CONTINUOUS_PRIORS
from twostage.lazy import resolve
from twostage.plan import dvc_pipeline, jobs
from twostage.provenance import codedeps, software, versions
from twostage.report.provenance import result_versions

SMOKE = "params/profiles/smoke.yaml"


@pytest.fixture(scope="module")
def params(repo: Path):
    return load_params([SMOKE], root=repo)


def downstream(params, names: set[str]) -> set[str]:
    """``names`` and every job that reads, directly or not, what they write (plan graph)."""
    plan = jobs(params)
    producer = {out: j.dvc_name for j in plan for out in j.outs + j.metrics + j.plots}
    found = set(names)
    for j in plan:  # upstream first
        if any(producer.get(d) in found for d in j.deps):
            found.add(j.dvc_name)
    return found


def changed_after(params, edit) -> set[str]:
    before = versions.code_hashes(params)
    edit()
    codedeps.clear_caches()
    after = versions.code_hashes(params)
    return {job for job in before if before[job] != after[job]}


def own_code_holds(params, module: str) -> set[str]:
    return {
        j.dvc_name
        for j in jobs(params)
        if module in codedeps.closure(versions.selectors(params, j))
    }


def test_the_absorbing_model_is_code_of_the_absorbing_priors_jobs_only(params):
    absorbing = {pr for pr in params.target_priors() if params.prior(pr)["kind"] == "absorbing"}
    runs = {r for r in params["targets"] if params.prior_of_run(r) in absorbing}
    # the smoke profile's replicates (seeds.py) of an absorbing run train their own prior
    replicas = {
        pr for pr in params.target_replicas("priors") if params.original("priors", pr) in absorbing
    }
    replica_runs = {r for r in params.target_replicas("runs") if params.prior_of_run(r) in replicas}
    assert replicas and replica_runs
    expected = {f"train_prior-{pr}" for pr in absorbing | replicas}
    expected |= {f"{stage}-{pr}" for pr in absorbing for stage in ("inpaint", "large_samples")}
    expected |= {f"sample-{run}" for run in runs | replica_runs}
    assert own_code_holds(params, "twostage.models.priors.absorbing") == expected


def test_replicates_have_code_hashes_and_share_their_originals_code(params, source):
    hashes = versions.code_hashes(params)
    assert set(hashes) == {j.dvc_name for j in jobs(params)}
    # same code, same upstream code: the same hash as the original's job
    assert hashes["train_prior-absorbing_mnist-seed1"] == hashes["train_prior-absorbing_mnist"]
    assert hashes["sample-rae_gmm-seed1"] == hashes["sample-rae_gmm"]
    # and an edit of stage-1 code stales a replicated stage 1 and all it feeds
    changed = changed_after(
        params, lambda: edit_function_body(source / "models/autoencoders/vq.py")
    )
    assert downstream(params, {"train_autoencoder-vq_mnist-seed1"}) <= changed
    assert "sample-absorbing_confidence-seed1" in changed


def _trainings_of(params, prior: str) -> set[str]:
    """The training jobs of ``prior`` and of its replicates."""
    replicas = [
        pr for pr in params.target_replicas("priors") if params.original("priors", pr) == prior
    ]
    assert prior != "absorbing_mnist" or replicas  # the smoke profile replicates it
    return {f"train_prior-{pr}" for pr in [prior, *replicas]}


def test_editing_a_function_of_the_absorbing_prior_stales_its_chain_only(params, source):
    changed = changed_after(
        params, lambda: edit_function_body(source / "models/priors/absorbing.py")
    )
    # the absorbing prior and its replicates of the smoke profile (seeds.py, and its claim's)
    assert changed == downstream(params, _trainings_of(params, "absorbing_mnist"))
    assert "train_prior-autoregressive_mnist" not in changed
    assert "train_autoencoder-vq_mnist" not in changed
    assert not any("glf" in job or "vae" in job for job in changed)


def test_editing_the_transformer_stales_both_token_priors(params, source):
    changed = changed_after(
        params, lambda: edit_function_body(source / "models/priors/transformer.py")
    )
    assert changed == downstream(
        params,
        _trainings_of(params, "absorbing_mnist") | _trainings_of(params, "autoregressive_mnist"),
    )


def test_comments_docstrings_and_layout_are_not_code(params, source):
    def reformat():
        for rel in ("models/priors/absorbing.py", "models/priors/transformer.py", "cli.py"):
            reformat_without_changing_code(source / rel)

    assert changed_after(params, reformat) == set()


def test_answers_kept_on_disk_are_a_fresh_parse_s_and_only_for_the_same_package(
    params, source, monkeypatch
):
    memo = codedeps.MEMO_DIR  # the source fixture's own folder, empty
    fresh = versions.code_hashes(params)  # parses, and keeps the answers
    files = versions.code_files(params)
    assert [f.name for f in memo.iterdir()] == [f"{codedeps.package_digest()}.json"]

    def no_parse(name):
        raise AssertionError(f"parsed {name}: the kept answers should have served")

    parse = codedeps.load
    codedeps.clear_caches()  # a new process: nothing in memory
    monkeypatch.setattr(codedeps, "load", no_parse)
    assert versions.code_hashes(params) == fresh and versions.code_files(params) == files

    monkeypatch.setattr(codedeps, "load", parse)  # an edited package: another digest
    edit_function_body(source / "models/priors/absorbing.py")
    codedeps.clear_caches()
    edited = versions.code_hashes(params)
    assert edited != fresh and len(list(memo.iterdir())) == 2

    (memo / f"{codedeps.package_digest()}.json").write_text("{not json")  # a torn write
    codedeps.clear_caches()
    assert versions.code_hashes(params) == edited


def test_a_new_kind_in_the_kind_table_is_no_other_kinds_code(params, source):
    table = source / "kinds.py"
    text = table.read_text()
    entry = "KINDS = {\n"
    assert entry in text
    new = entry + (
        '    "mask_predict": PriorKind(\n'
        '        model="twostage.models.priors.absorbing:AbsorbingDiffusion",\n'
        '        trainer="twostage.train.token_prior:train_token_prior",\n'
        "        continuous=False,\n"
        '        sits_on=("vq",),\n'
        "    ),\n"
    )
    assert changed_after(params, lambda: table.write_text(text.replace(entry, new))) == set()


def test_a_kind_s_trainer_is_code_of_its_training_jobs_not_of_its_samplers(params):
    """The kind table names model and trainer; a job takes only the roles it resolves."""
    trainer = "twostage.train.token_prior"
    holding = own_code_holds(params, trainer)
    assert holding and all(job.startswith("train_prior-") for job in holding)
    sampler = "sample-absorbing_confidence"
    assert sampler in own_code_holds(params, "twostage.models.priors.absorbing")
    assert sampler not in holding
    # evaluation decodes with the autoencoder and never builds the prior
    decoding = own_code_holds(params, "twostage.models.autoencoders")
    evaluate = {j for j in decoding if j.startswith("evaluate-")}
    assert evaluate and not evaluate & own_code_holds(params, "twostage.models.priors")


def test_editing_a_shared_module_stales_every_job_that_imports_it(params, source):
    changed = changed_after(params, lambda: edit_function_body(source / "runtime.py"))
    assert changed == {j.dvc_name for j in jobs(params)}  # the CLI sets threads for every job


def test_a_schema_default_is_code_of_every_job(params, source):
    schema = source / "params_schema.yaml"
    text = schema.read_text()
    assert changed_after(params, lambda: schema.write_text(text + "\n# a comment\n")) == set()
    changed = changed_after(
        params,
        lambda: schema.write_text(
            text.replace(
                "quantizer: {enum: [nearest, gumbel], default: nearest}",
                "quantizer: {enum: [nearest, gumbel], default: gumbel}",
            )
        ),
    )
    assert changed == {j.dvc_name for j in jobs(params)}


def test_an_import_under_type_checking_is_not_code(source):
    module = source / "lazy.py"
    base = codedeps.closure(frozenset({"report"}))
    module.write_text(
        module.read_text()
        + "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        + "    from twostage.models.priors import absorbing  # noqa: F401\n"
    )
    codedeps.clear_caches()
    assert codedeps.closure(frozenset({"report"})) == base


def test_a_changed_package_version_makes_every_job_stale(params, repo, tmp_path, monkeypatch):
    pipeline = dvc_pipeline(params, [SMOKE], root=repo)["stages"]
    for name, stage in pipeline.items():  # every stage reads the software hash
        assert {paths.VERSIONS: ["software"]} in stage["params"], name
    before = software.software_hash()
    # importlib.metadata takes the first distribution of a name on sys.path
    dist = tmp_path / "numpy-99.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 99.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert software.versions()["numpy"] == "99.0"
    assert software.software_hash() != before


def test_every_imported_package_is_numeric_or_declared_not_to_be(repo: Path):
    """A new third-party import must be classified: shaping numbers, or not."""
    import ast
    import sys
    from importlib import metadata

    imported = set()
    for path in (repo / "src/twostage").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    imported -= set(sys.stdlib_module_names) | {"twostage"}
    distributions = metadata.packages_distributions()
    classified = {n.lower() for n in software.NUMERIC_PACKAGES + software.NOT_NUMERIC}
    for name in imported:
        dists = {d.lower().replace("_", "-") for d in distributions[name]}
        assert dists & classified, f"{name} ({dists}): add it to software.py"


def test_every_kind_dispatches_and_resolves():
    from twostage.kinds import KINDS, kinds_of

    token_priors = ("absorbing", "autoregressive")
    assert set(kinds_of("prior")) == {*token_priors, *CONTINUOUS_PRIORS}
    assert set(kinds_of("autoencoder")) == {"vq", *CONTINUOUS_AUTOENCODERS}
    for kind in KINDS.values():
        assert callable(resolve(kind.model)) and callable(resolve(kind.trainer)), kind


def test_dvc_hashes_each_jobs_code_files_and_its_upstream_jobs(params, repo):
    """DVC sees a code edit on its own: a stage's deps hold the source files of its own
    code (codedeps closure) and of its upstream jobs', so an edited file stales the jobs
    whose code holds it and everything downstream, as the code hash does."""
    pipeline = dvc_pipeline(params, [SMOKE], root=repo)["stages"]
    absorbing = "src/twostage/models/priors/absorbing.py"
    holders = own_code_holds(params, "twostage.models.priors.absorbing")
    assert {n for n, s in pipeline.items() if absorbing in s["deps"]} == downstream(params, holders)
    schema = "src/twostage/params_schema.yaml"  # package data: code of every job
    for name, stage in pipeline.items():
        code = [d for d in stage["deps"] if d.startswith("src/")]
        assert schema in code and "src/twostage/cli.py" in code, name
        assert all((repo / d).is_file() for d in code), name
        # the bookkeeping modules are no job's code
        assert not any(f.startswith("src/twostage/provenance/") for f in code)


def test_record_path_is_where_snakemake_keeps_the_record(tmp_path, monkeypatch):
    from snakemake.persistence.file import FilePersistence

    from twostage.provenance.adopt import record_path

    monkeypatch.chdir(tmp_path)
    persistence = FilePersistence(path=tmp_path / ".snakemake")
    for output in ("results/priors/absorbing_mnist/model.pt", "results/" + "x" * 300):
        expected = persistence._record_path(persistence._metadata_path, output)
        assert record_path(output) == Path(expected).relative_to(tmp_path)


def test_outputs_whose_record_is_not_of_them_are_found(params, tmp_path, monkeypatch):
    """adopt.unrecorded_outputs: an output without a Snakemake record, with a record of
    other params or code, or with a record of another file (modified since)."""
    from twostage.provenance.adopt import record_path, unrecorded_outputs

    monkeypatch.chdir(tmp_path)
    now = {"code": versions.code_hashes(params), "software": software.software_hash()}
    j = next(j for j in jobs(params) if j.dvc_name == "sample-rae_gmm")
    out = j.outs[0]
    Path(out).parent.mkdir(parents=True)
    Path(out).write_text("samples")
    assert unrecorded_outputs(params, now) == [out]  # no record

    def record(params_list: list[str], endtime: float) -> None:
        path = record_path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"params": params_list, "endtime": endtime}))

    mtime = Path(out).stat().st_mtime
    record([repr(versions.rule_params(params, j, now))], mtime)  # as Snakemake writes it
    assert unrecorded_outputs(params, now) == []
    other = {**now, "code": {**now["code"], j.dvc_name: "0" * 16}}
    assert unrecorded_outputs(params, other) == [out]  # made by other code
    values = json.loads(versions.rule_params(params, j, now))
    values["runs.rae_gmm"]["temperature"] = 0.5
    record([repr(json.dumps(values, sort_keys=True))], mtime)
    assert unrecorded_outputs(params, now) == [out]  # made with other params
    record([repr(versions.rule_params(params, j, now))], mtime - 1.0)
    assert unrecorded_outputs(params, now) == [out]  # replaced since it was recorded


def test_provenance_marks_results_made_by_other_code(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = versions.code_hashes(params)
    now = {"software": software.software_hash()}
    plan = jobs(params)
    old_code, old_software, unrecorded = [j for j in plan if j.metrics][2:5]
    for j in plan:
        for metrics in j.metrics:
            Path(metrics).parent.mkdir(parents=True, exist_ok=True)
            made = {"code": code[j.dvc_name], **now}
            if j is old_code:
                made["code"] = "0" * 16
            if j is old_software:
                made["software"] = "1" * 16
            body = {"x": 1.0} if j is unrecorded else {"x": 1.0, "versions": made}
            Path(metrics).write_text(json.dumps(body))
    status = result_versions(params)
    marked = {m for m, s in status.items() if s != "current"}
    assert marked == set(old_code.metrics + old_software.metrics + unrecorded.metrics)
    assert {status[m] for m in old_code.metrics} == {"NOT CURRENT (other code)"}
    assert {status[m] for m in old_software.metrics} == {"NOT CURRENT (other software)"}
    assert {status[m] for m in unrecorded.metrics} == {
        "NOT RECORDED (made before stages recorded their versions)"
    }
