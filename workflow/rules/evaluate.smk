# The offline feature extractor (a classifier trained on the dataset's labels),
# the real-feature cache shared by every run, the scores, and nearest neighbours.


rule train_classifier:
    input:
        job_inputs("train_classifier"),
    output:
        model="results/extractors/classifier-{name}/model.pt",
        metrics="results/extractors/classifier-{name}/metrics.json",
    log:
        "results/logs/train_classifier/{name}.log",
    benchmark:
        "results/benchmarks/train_classifier/{name}.tsv"
    priority: job_priority("train_classifier")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=120,
    params:
        values=job_params("train_classifier"),
    shell:
        stage_cmd("train-classifier")


rule extract_features:
    input:
        job_inputs("extract_features"),
    output:
        # Every configured extractor's train/val features and cache key.
        expand(
            "results/features/{{name}}-{extractor}/{file}",
            extractor=plan.extractor_names(P),
            file=["train.npy", "val.npy", "key.json"],
        ),
    log:
        "results/logs/extract_features/{name}.log",
    benchmark:
        "results/benchmarks/extract_features/{name}.tsv"
    priority: job_priority("extract_features")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("extract_features"),
    shell:
        stage_cmd("extract-features")


rule calibrate:
    input:
        job_inputs("calibrate"),
    output:
        metrics="results/calibration/{name}/metrics.json",
        grid=report(
            "results/calibration/{name}/random_tokens.png",
            caption="../report/random_tokens.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
    log:
        "results/logs/calibrate/{name}.log",
    benchmark:
        "results/benchmarks/calibrate/{name}.tsv"
    priority: job_priority("calibrate")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("calibrate"),
    shell:
        stage_cmd("calibrate")


rule evaluate:
    input:
        job_inputs("evaluate"),
    output:
        metrics=report(
            "results/eval/{name}/metrics.json",
            caption="../report/eval_metrics.rst",
            category="Metrics",
            labels={"run": "{name}"},
        ),
    log:
        "results/logs/evaluate/{name}.log",
    benchmark:
        "results/benchmarks/evaluate/{name}.tsv"
    priority: job_priority("evaluate")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("evaluate"),
    shell:
        stage_cmd("evaluate")


rule neighbours:
    input:
        job_inputs("neighbours"),
    output:
        grid="results/eval/{name}/neighbours.png",
        metrics="results/eval/{name}/memorization.json",
        histogram="results/eval/{name}/memorization.png",
        flagged="results/eval/{name}/flagged.png",
    log:
        "results/logs/neighbours/{name}.log",
    benchmark:
        "results/benchmarks/neighbours/{name}.tsv"
    priority: job_priority("neighbours")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=job_params("neighbours"),
    shell:
        stage_cmd("neighbours")
