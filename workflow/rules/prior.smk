rule train_prior:
    input:
        job_inputs("train_prior"),
    output:
        model=paths.prior("{name}")["model"],
        metrics=paths.prior("{name}")["metrics"],
        curve=paths.prior("{name}")["curve"],
    log:
        paths.log("train_prior", "{name}"),
    benchmark:
        paths.benchmark("train_prior", "{name}")
    priority: job_priority("train_prior")
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=training_gpus("priors"),
        runtime=2880,
    params:
        values=job_params("train_prior"),
    shell:
        stage_cmd("train-prior")
