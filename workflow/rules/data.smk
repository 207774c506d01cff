rule prepare_data:
    input:
        job_inputs("prepare_data"),
    output:
        train=paths.data("{name}")["train"],
        val=paths.data("{name}")["val"],
        manifest=paths.data("{name}")["manifest"],
    log:
        paths.log("prepare_data", "{name}"),
    benchmark:
        paths.benchmark("prepare_data", "{name}")
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
