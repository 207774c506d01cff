rule sample:
    input:
        job_inputs("sample"),
    output:
        images="results/samples/{name}/images.npy",
        grid="results/samples/{name}/grid.png",
        stats="results/samples/{name}/stats.json",
    log:
        "results/logs/sample/{name}.log",
    benchmark:
        "results/benchmarks/sample/{name}.tsv"
    conda:
        TWOSTAGE_ENV
    threads: TRAINING_THREADS
    resources:
        mem_mb=4000,
        gpu=1,
    params:
        values=job_params("sample"),
    shell:
        stage_cmd("sample")
