rule prepare_data:
    input:
        job_inputs("prepare_data"),
    output:
        train="results/data/{name}/train.npz",
        val="results/data/{name}/val.npz",
        manifest="results/data/{name}/manifest.json",
    log:
        "results/logs/prepare_data/{name}.log",
    benchmark:
        "results/benchmarks/prepare_data/{name}.tsv"
    priority: job_priority("prepare_data")
    conda:
        TWOSTAGE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        gpu=0,
        runtime=30,
    params:
        values=job_params("prepare_data"),
    shell:
        stage_cmd("prepare-data")
