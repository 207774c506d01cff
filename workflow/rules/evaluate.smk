# The offline feature extractor (a classifier trained on the dataset's labels),
# the real-feature cache shared by every run, the scores, and nearest neighbours.


stage = StageRule("train_classifier")


rule train_classifier:
    input:
        stage.input,
    output:
        model=paths.classifier("{name}")["model"],
        metrics=paths.classifier("{name}")["metrics"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=120,
    params:
        values=stage.params,
    shell:
        stage_shell("train_classifier")


stage = StageRule("extract_features")


rule extract_features:
    input:
        stage.input,
    output:
        # Every configured extractor's train/val features and cache key.
        [
            f
            for extractor in plan.extractor_names(P)
            for f in paths.features("{name}", extractor).values()
        ],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("extract_features")


stage = StageRule("calibrate")


rule calibrate:
    input:
        stage.input,
    output:
        metrics=paths.calibration("{name}")["metrics"],
        grid=report(
            paths.calibration("{name}")["grid"],
            caption="../report/random_tokens.rst",
            category="Autoencoders",
            subcategory="{name}",
        ),
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("calibrate")


stage = StageRule("evaluate")


rule evaluate:
    input:
        stage.input,
    output:
        metrics=report(
            paths.evaluation("{name}")["metrics"],
            caption="../report/eval_metrics.rst",
            category="Metrics",
            labels={"run": "{name}"},
        ),
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("evaluate")


stage = StageRule("neighbours")


rule neighbours:
    input:
        stage.input,
    output:
        grid=paths.neighbours("{name}")["grid"],
        metrics=paths.neighbours("{name}")["metrics"],
        histogram=paths.neighbours("{name}")["histogram"],
        flagged=paths.neighbours("{name}")["flagged"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=60,
    params:
        values=stage.params,
    shell:
        stage_shell("neighbours")
