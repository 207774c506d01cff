stage = StageRule("train_prior")


rule train_prior:
    input:
        stage.input,
    output:
        model=paths.prior("{name}")["model"],
        metrics=paths.prior("{name}")["metrics"],
        curve=paths.prior("{name}")["curve"],
    log:
        stage.log,
    benchmark:
        stage.benchmark
    priority: stage.priority
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=stage.gpus,
        runtime=2880,
    params:
        values=stage.params,
    shell:
        stage_shell("train_prior")
