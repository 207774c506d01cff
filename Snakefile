# twostage: the experiment DAG. Thin on purpose: the params are loaded and
# validated by the twostage package (one schema), the jobs come from
# src/twostage/plan.py (which also generates dvc.yaml), and the rules live in
# workflow/rules/, one file per phase.
#
#   snakemake --cores 2                                          # default experiments
#   snakemake --cores 2 --configfile params/profiles/smoke.yaml  # any profile on top


from snakemake.utils import min_version

min_version("9.0")


# Snakemake's own report (`snakemake --report report.zip`): outputs flagged with
# report(...) in the rules, captions in workflow/report/.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/autoencoder.smk"
include: "workflow/rules/prior.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        paths.report()["html"],
