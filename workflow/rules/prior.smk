rule train_prior:
    input:
        job_inputs("train_prior"),
    output:
        model="results/priors/{name}/model.pt",
        metrics="results/priors/{name}/metrics.json",
        curve="results/priors/{name}/train_log.csv",
    log:
        "results/logs/train_prior/{name}.log",
    benchmark:
        "results/benchmarks/train_prior/{name}.tsv"
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
