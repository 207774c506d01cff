# The offline feature extractor (a classifier trained on the dataset's labels),
# the real-feature cache shared by every run, the scores, and nearest neighbours.


rule train_classifier:
    input:
        job_inputs("train_classifier"),
    output:
        model=paths.classifier("{name}")["model"],
        metrics=paths.classifier("{name}")["metrics"],
    log:
        paths.log("train_classifier", "{name}"),
    benchmark:
        paths.benchmark("train_classifier", "{name}")
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
        [
            f
            for extractor in plan.extractor_names(P)
            for f in paths.features("{name}", extractor).values()
        ],
    log:
        paths.log("extract_features", "{name}"),
    benchmark:
        paths.benchmark("extract_features", "{name}")
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
        metrics=paths.calibration("{name}")["metrics"],
        grid=report(
            paths.calibration("{name}")["grid"],
            caption="../report/random_tokens.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
    log:
        paths.log("calibrate", "{name}"),
    benchmark:
        paths.benchmark("calibrate", "{name}")
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
            paths.evaluation("{name}")["metrics"],
            caption="../report/eval_metrics.rst",
            category="Metrics",
            labels={"run": "{name}"},
        ),
    log:
        paths.log("evaluate", "{name}"),
    benchmark:
        paths.benchmark("evaluate", "{name}")
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
        grid=paths.neighbours("{name}")["grid"],
        metrics=paths.neighbours("{name}")["metrics"],
        histogram=paths.neighbours("{name}")["histogram"],
        flagged=paths.neighbours("{name}")["flagged"],
    log:
        paths.log("neighbours", "{name}"),
    benchmark:
        paths.benchmark("neighbours", "{name}")
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
