stage = StageRule("prepare_data")


rule prepare_data:
    input:
        stage.input,
    output:
        train=paths.data("{name}")["train"],
        val=paths.data("{name}")["val"],
        manifest=paths.data("{name}")["manifest"],
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
        runtime=30,
    params:
        values=stage.params,
    shell:
        stage_shell("prepare_data")
